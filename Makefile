# cellseg: `make demo` runs the main job on built-in synthetic data, `make test` the tests.
# Both need only python3 (3.11 or newer): they create .venv and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

DEMO_KIND ?= fluo
DEMO_NAME := $(if $(filter phc,$(DEMO_KIND)),PhC-C2DL-SYNTH,Fluo-N2DH-SYNTH)
DEMO_DATA ?= data/demo/$(DEMO_NAME)
DEMO_RECORDS ?= records/$(DEMO_NAME)
DEMO_RUN ?= runs/demo-$(DEMO_KIND)
DEMO_TARGET ?=

.PHONY: help test demo bench quality compare-targets clean

help:
	@echo "make demo   synthesise a CTC dataset, convert, train, predict the held-out sequence, evaluate (DEMO_KIND=fluo|phc)"
	@echo "make test   run the test suite"
	@echo "make bench  run the benchmarks (conversion, input pipeline, training step, inference, a time-lapse, memory); report in benchmarks/results/"
	@echo "make quality  cellseg's default against a plain U-Net recipe and Otsu on synthetic and real data; table in benchmarks/results/"
	@echo "make compare-targets  train binary, three_class and distance on crowded synthetic cells; table in docs/TARGETS.md"
	@echo "make clean  remove generated data, records and runs (keeps .venv)"

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cellseg needs Python 3.11 or newer, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

# Byte-compiled at install (pip's default), not at first import: where PYTHONDONTWRITEBYTECODE is set, as on
# this project's machines, every command would compile TensorFlow again (15 s a start-up against 6 s).
$(INSTALLED): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bioimageio]'
	touch $@

# Two pytest workers (pytest-xdist): most tests wait on a command's start-up or on one core, so two cut the
# wall time by a third on CI's two cores; more would only contend for them.
TEST_WORKERS ?= 2

# The modules of on-device code, run a second time on Keras' JAX backend (without the tests marked `tensorflow`, and
# `one_backend`: what Keras computes alike on both):
# their expected values are computed in numpy, so both backends are held to the same numbers.
JAX_TESTS ?= tests/test_augment.py tests/test_targets.py tests/test_losses.py tests/test_metrics.py \
	tests/test_model.py tests/test_segmenter.py

test: $(INSTALLED)
	$(BIN)/python -m pytest -n $(TEST_WORKERS)
	KERAS_BACKEND=jax JAX_PLATFORMS=cpu $(BIN)/python -m pytest -n $(TEST_WORKERS) -m 'not tensorflow and not one_backend' \
		$(JAX_TESTS)

demo: $(INSTALLED)
	$(BIN)/cellseg-synth --kind=$(DEMO_KIND) --output_dir=$(DEMO_DATA) \
		--sequences=2 --frames=12 --height=256 --width=256 --seed=0 --overwrite
	@echo
	$(BIN)/cellseg-convert --input_dir=$(DEMO_DATA) --output_dir=$(DEMO_RECORDS) --val_sequences=02 --overwrite \
		$(if $(filter distance,$(DEMO_TARGET)),--distance_maps)
	@echo
	rm -rf $(DEMO_RUN)
	$(BIN)/cellseg-train --records_dir=$(DEMO_RECORDS) --model_dir=$(DEMO_RUN) \
		--epochs=12 --steps_per_epoch=50 --patch_size=128 --per_replica_batch_size=8 --learning_rate=1e-3 \
		$(if $(DEMO_TARGET),--target=$(DEMO_TARGET))
	@echo
	$(BIN)/cellseg-predict --model=$(DEMO_RUN) --input=$(DEMO_DATA)/02 \
		--output_dir=$(DEMO_RUN)/predictions --overlays
	@echo
	$(BIN)/cellseg-evaluate --pred=$(DEMO_RUN)/predictions/02_RES --gt=$(DEMO_DATA)/02_GT/SEG --baseline=otsu \
		--output_json=$(DEMO_RUN)/evaluation.json
	@echo
	@echo "held-out sequence 02 segmented and tracked: $(DEMO_RUN)/predictions/02_RES (labels, res_track.txt), cells.csv, tracks.csv, overlays/ (trajectories.png, lineage.png)"
	@echo "TensorBoard: $(BIN)/tensorboard --logdir $(DEMO_RUN)/tensorboard"

bench: $(INSTALLED)
	@start=$$(date +%s); \
	for script in convert input_pipeline training inference sequence predict_pipeline memory; do \
		echo "== benchmarks/$$script.py"; \
		$(BIN)/python benchmarks/$$script.py || exit 1; \
	done; \
	$(BIN)/python benchmarks/report.py --bench_started=$$start || exit 1; \
	echo "make bench: $$(( $$(date +%s) - start )) s wall time"

quality: $(INSTALLED)
	$(BIN)/python benchmarks/quality.py $(QUALITY_FLAGS)

compare-targets: $(INSTALLED)
	$(BIN)/python benchmarks/compare_targets.py

clean:
	rm -rf data/demo runs
	find records -mindepth 1 ! -name README.md -exec rm -rf {} +
