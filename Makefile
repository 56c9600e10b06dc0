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

.PHONY: install test demo demo-videos plugin-link tiny-model bench bench-search app

install:
	@bash scripts/install.sh

test: install
	@echo "[test] $(PY) -m pytest"
	$(PY) -m pytest

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

# The tiny trained checkpoint the tests use; handy for `make demo MODEL=.cache/tiny-marlin`.
tiny-model: install
	$(PY) tests/tiny_model.py .cache/tiny-marlin --trained

bench: install
	$(PY) bench/preprocess.py
	$(PY) bench/engine.py
	$(PY) bench/long_video.py

# Search: ROC-AUC of the presence score (real Marlin captions + tiny model) and find calls vs exhaustive.
bench-search: install
	$(PY) bench/search.py

app: install plugin-link
	$(PY) -c "import fiftyone as fo; s = fo.launch_app(fo.load_dataset('$(DATASET)')); s.wait()"
