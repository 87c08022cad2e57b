# posetok: `make convert DATASET=droid` and `make test` are all a fresh machine needs.
# `setup` is idempotent: it creates .venv once (re-done when pyproject.toml changes) and installs
# the system library Open3D needs when it is missing.

PY      ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.posetok-installed
# torch is pinned here, before anything else resolves it: 2.13.0 is a local CPU wheel on the
# project's machines; an unpinned `torch` pulls several GB of CUDA wheels.
TORCH   := torch==2.13.0

DATASET ?= droid
OUT     ?= out
SOURCE  ?=
WORKERS ?=
ARGS    ?=
PYTEST_ARGS ?=

.PHONY: setup system-libs test test-slow convert bench lint clean demo-data train-demo

setup: $(STAMP) system-libs

$(STAMP): pyproject.toml
	@echo ">> creating $(VENV) (first time: ~5 minutes, ~6.5 GB)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

# Open3D's wheel links libusb-1.0 but does not ship it.
system-libs:
	@if ! ldconfig -p | grep -q 'libusb-1.0.so.0'; then \
	  echo ">> installing libusb-1.0-0 (needed by open3d)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null \
	    || { echo "could not install libusb-1.0-0: run 'apt-get install -y libusb-1.0-0' as root" >&2; exit 1; }; \
	fi

test: setup
	$(BIN)/ruff check schemas converters pipelines model tests
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

convert: setup
	$(BIN)/python -m pipelines.convert --dataset $(DATASET) --out $(OUT) \
	  $(if $(SOURCE),--source $(SOURCE)) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS)

# Benchmarks against the read floor and the peers (~7 minutes on 2 cores): out/bench/bench.{json,md}.
bench: setup
	$(BIN)/python -m pipelines.bench --out $(OUT)/bench $(ARGS)

# Training demo on generated samples (CPU, 2 cores): data, stage 1, evaluation, the Pose-VLA ablation
# (the tables of docs/training.md). DROID-format pick episodes: the target object is somewhere else in
# every episode; 20 % of the episodes (by stable hash) are held out of stages 2 and 3 alike. The samples
# are generated side by side (one process each, seeded: the same files as one after the other).
DEMO      ?= out/train
DEMO_DATA := "omni3d_sunrgbd 120 3" "bop_ycbv 120 3" "objectron 120 3" "droid 40 100" "lerobot_demo 8 80" "egodex 6 45"
DEMO_VAL  := demo_pose:0.1 demo_trajectory:0.2 demo_action:0.2
POSE_STEPS ?= 3000
TRAJECTORY_STEPS ?= 600
ACTION_STEPS ?= 300
SEEDS ?= 0 1 2 3

demo-data: setup
	@pids=""; for spec in $(DEMO_DATA); do set -- $$spec; \
	  $(BIN)/python -m pipelines.make_sample --dataset $$1 --out $(DEMO)/src/$$1 --episodes $$2 --steps $$3 & \
	  pids="$$pids $$!"; done; for pid in $$pids; do wait $$pid || exit 1; done
	@for spec in $(DEMO_DATA); do set -- $$spec; \
	  $(BIN)/python -m pipelines.convert --dataset $$1 --source $(DEMO)/src/$$1 --out $(DEMO) --quiet --no-preview \
	  || exit 1; done
	@for spec in $(DEMO_VAL); do m=$${spec%%:*}; \
	  $(BIN)/python -m pipelines.build_mixture --mixture $$m --data $(DEMO) --out $(DEMO)/mixtures \
	    --val-fraction $${spec##*:} || exit 1; done

train-demo: demo-data
	$(BIN)/python -m model.train --stage pose --mixture $(DEMO)/mixtures/demo_pose.json --out $(DEMO)/runs/pose \
	  --steps $(POSE_STEPS)
	$(BIN)/python -m model.evaluate --ckpt $(DEMO)/runs/pose/last.pt --mixture $(DEMO)/mixtures/demo_pose.json \
	  --samples 96
	$(BIN)/python -m model.ablation --pose-ckpt $(DEMO)/runs/pose/last.pt --out $(DEMO)/runs/ablation \
	  --pose-mixture $(DEMO)/mixtures/demo_pose.json --trajectory-mixture $(DEMO)/mixtures/demo_trajectory.json \
	  --action-mixture $(DEMO)/mixtures/demo_action.json --trajectory-steps $(TRAJECTORY_STEPS) \
	  --action-steps $(ACTION_STEPS) --seeds $(SEEDS)

lint: setup
	$(BIN)/ruff check schemas converters pipelines model tests

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache .hypothesis
