#!/usr/bin/env bash
# `make app`: the FiftyOne App on DATASET plus one delegated worker, so "Schedule" works.
#
# Order matters: the App starts first and brings up FiftyOne's database (the local MongoDB FiftyOne
# manages, or FIFTYONE_DATABASE_URI when set); the worker starts once the App answers, so both
# connect to that one database instead of racing to start their own (a worker that lost the race
# died with MongoDB "failed to bind" while the run it should pick up stayed queued). A second
# `make app` on a port already in use stops before starting anything, so the first keeps working.
# Usage: scripts/app.sh PYTHON DATASET PORT ADDRESS
set -uo pipefail
PY=${1:?python}; DATASET=${2:?dataset}; PORT=${3:-5151}; ADDRESS=${4:-localhost}
VENV_BIN=$(dirname "$PY")
LOG=.cache/delegated-worker.log
WORKER_SETTLE_S=${WORKER_SETTLE_S:-3}
WORKER_READY_S=${WORKER_READY_S:-120}
# The worker's command line (tests give it a bad flag to see a worker that dies at start-up reported).
WORKER_CMD=${MARLIN_WORKER_CMD:-"$VENV_BIN/fiftyone delegated launch"}
mkdir -p .cache
export FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true

port_in_use() {
  "$PY" - "$ADDRESS" "$PORT" <<'EOF'
import socket, sys
with socket.socket() as s:
    s.settimeout(1)
    sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)
EOF
}

if port_in_use; then
  echo "[app] something already serves http://$ADDRESS:$PORT (an App from an earlier 'make app'?);" \
       "nothing started. Use that one, or 'make app PORT=$((PORT + 1))' for a second App." >&2
  exit 1
fi

# The App's server itself (what launch_app runs, without its 10-second start-up limit on a busy machine).
"$PY" -c "import fiftyone as fo; fo.load_dataset('$DATASET')" || exit 1
"$PY" -m fiftyone.server.main --port "$PORT" --address "$ADDRESS" &
app=$!
worker=""
trap 'kill $app $worker 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 240); do  # the App (and its database) up: at most 2 minutes
  if ! kill -0 $app 2>/dev/null; then echo "[app] the App exited before it started (see above)" >&2; exit 1; fi
  port_in_use && break
  sleep 0.5
done
echo "[app] http://$ADDRESS:$PORT/datasets/$DATASET"

$WORKER_CMD > "$LOG" 2>&1 &
worker=$!
# Alive means it said "Delegated operation service running" and is still there after WORKER_SETTLE_S.
for _ in $(seq 1 $((WORKER_READY_S * 2))); do
  kill -0 $worker 2>/dev/null || break
  grep -q "Delegated operation service running" "$LOG" 2>/dev/null && break
  sleep 0.5
done
kill -0 $worker 2>/dev/null && grep -q "Delegated operation service running" "$LOG" && sleep "$WORKER_SETTLE_S"
if kill -0 $worker 2>/dev/null && grep -q "Delegated operation service running" "$LOG"; then
  echo "[app] delegated worker running (pid $worker, log $LOG): scheduled runs start there"
else
  last=$(grep -v '^\s*$' "$LOG" | tail -n 1)
  if kill -0 $worker 2>/dev/null; then
    echo "[app] WARNING: the delegated worker did not start within ${WORKER_READY_S} s; scheduled runs may stay queued." >&2
  else
    echo "[app] WARNING: the delegated worker exited at start-up; scheduled runs will stay queued." >&2
    worker=""
  fi
  echo "[app]   its log's last line: ${last:-<empty>} (full log: $LOG; start one with 'make worker')" >&2
fi
wait $app
