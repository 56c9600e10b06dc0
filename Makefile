# fiftyone-marlin: `make demo` and `make test` install what they need, then run.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= NemoStation/Marlin-2B
VIDEOS ?=
DATASET ?= marlin-demo
QUERY ?= a person walks
# FiftyOne finds this clone as the @marlin/marlin plugin through a link in this folder.
PLUGINS_DIR := $(CURDIR)/.cache/plugins
export FIFTYONE_PLUGINS_DIR ?= $(PLUGINS_DIR)

.PHONY: install test test-fast demo demo-videos plugin-link tiny-model bench bench-gpu bench-search app worker test-fiftyone-min serve

install:
	@bash scripts/install.sh

# The whole suite on parallel workers (pytest-xdist, `-n auto` in pyproject.toml; tests/conftest.py says how).
test: install
	@echo "[test] $(PY) -m pytest"
	$(PY) -m pytest

# The unit tier while working (no MongoDB, model, subprocess, browser or server: tests/conftest.py's "heavy");
# CPU-bound tests, so one worker per core.
test-fast: | $(PY)
	$(PY) -m pytest -m "not heavy" -n 2

$(PY):
	@bash scripts/install.sh

# Short clips for the demo when VIDEOS is not given.
demo-videos:
	@mkdir -p demo-videos
	@for spec in "testsrc2:640x360:25:8" "red:320x240:30:6" "blue:480x270:24:10"; do \
	  IFS=: read -r src size fps dur <<< "$$spec"; f="demo-videos/$$src.mp4"; \
	  if [ -s "$$f" ]; then echo "[demo] $$f exists"; continue; fi; \
	  if [ "$$src" = testsrc2 ]; then in="testsrc2=size=$$size:rate=$$fps:duration=$$dur"; \
	  else in="color=c=$$src:s=$$size:r=$$fps:d=$$dur"; fi; \
	  echo "[demo] making $$f"; \
	  ffmpeg -loglevel error -y -f lavfi -i "$$in" -c:v libx264 -pix_fmt yuv420p "$$f"; \
	done

plugin-link:
	@mkdir -p "$(PLUGINS_DIR)" && ln -sfn "$(CURDIR)" "$(PLUGINS_DIR)/fiftyone-marlin"

demo: install demo-videos plugin-link
	$(PY) scripts/demo.py --model "$(MODEL)" --dataset "$(DATASET)" --query "$(QUERY)" \
	  $(if $(VIDEOS),--videos $(VIDEOS),--videos demo-videos/*.mp4)

# A vLLM server for Marlin in the foreground until Ctrl-C (vLLM in $(PY)'s venv, .cache/vllm-venv, or
# $$MARLIN_VLLM_PYTHON); it prints the --model to use. PORT=8000; SERVE_ARGS="--gpu-memory-utilization 0.8 ...".
PORT ?= 8000
serve: install
	$(PY) -m marlin_core serve "$(MODEL)" --port $(PORT) $(SERVE_ARGS)

# The tiny trained checkpoint the tests use; handy for `make demo MODEL=.cache/tiny-marlin`.
tiny-model: install
	$(PY) tests/tiny_model.py .cache/tiny-marlin --trained

bench: install
	$(PY) bench/preprocess.py
	$(PY) bench/engine.py
	$(PY) bench/long_video.py

# The engine against the reference path at Marlin-2B's shape on CUDA; SMALL=1: a tiny width that runs on a CPU (CI).
bench-gpu: install
	$(PY) bench/gpu.py $(if $(SMALL),--small)

# The FiftyOne-facing tests against FiftyOne 1.14.0 (the lowest the plugin loads on; not claimed in fiftyone.yml).
FIFTYONE_MIN_TESTS := tests/test_caption_operator.py tests/test_find_operator.py tests/test_evaluate_operator.py \
  tests/test_resume.py tests/test_zoo_model.py tests/test_import_export_operators.py tests/test_packaging.py
test-fiftyone-min: install
	@bash scripts/fiftyone_min_venv.sh
	FIFTYONE_DATABASE_NAME=fiftyone-marlin-tests-min PYTHONPATH=$(CURDIR) \
	  .cache/fiftyone-min-venv/bin/python -m pytest -p no:cacheprovider $(FIFTYONE_MIN_TESTS) -k "not pip_install"

# Search: ROC-AUC of the presence score (real Marlin captions + tiny model) and find calls vs exhaustive.
bench-search: install
	$(PY) bench/search.py

# The App plus one delegated worker, so "Schedule" works: FiftyOne 1.22 offers Schedule only with
# FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true, and a scheduled run waits until a worker picks it up.
# The worker stops with the App (Ctrl+C). PORT / ADDRESS for a remote machine (ssh -L 5151:localhost:5151).
PORT ?= 5151
ADDRESS ?= localhost
app: install plugin-link
	@bash scripts/app.sh "$(PY)" "$(DATASET)" "$(PORT)" "$(ADDRESS)"

# One more worker, e.g. one per GPU: CUDA_VISIBLE_DEVICES=1 make worker
worker: plugin-link
	FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true $(VENV)/bin/fiftyone delegated launch
