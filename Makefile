# ray_effreason: the commands a newcomer runs. Every target uses .venv (made by `make setup`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RAY := $(VENV)/bin/ray
DASHBOARD_PORT ?= 8265
SWEEP_ARGS ?=
# On a CPU-only machine torch must be the CPU build (a plain `torch` requirement pulls GBs of CUDA wheels).
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
# On CPU, DeepSpeed's shared-memory allreduce op is compiled at install time: left to its just-in-time build,
# a learner killed mid-build leaves a lock file that makes every later learner wait forever.
DS_OPS ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "DS_BUILD_OPS=0" || echo "DS_BUILD_OPS=0 DS_BUILD_SHM_COMM=1")

.PHONY: setup test-local test-gpu sweep evaluate ray-start ray-stop bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	# deepspeed ships as an sdist that imports torch to build: build it against the torch just installed
	$(DS_OPS) $(PY) -m pip install --quiet --no-cache-dir --no-build-isolation "$(TORCH_SPEC)" deepspeed
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" -e .
	touch $@

setup: $(VENV)/.installed  ## create .venv with everything (vllm: `pip install -e .[vllm]` on GPU machines)

test-local: setup  ## the whole test suite on a single-node Ray, CPU only (< 10 min on 2 cores)
	$(PY) -m pytest -p no:cacheprovider -q --durations=15

test-gpu: setup  ## GPU-marked tests (vLLM, NCCL, bf16); run on a GPU machine
	$(PY) -m pytest -p no:cacheprovider -q -m "gpu or vllm"

ray-start: setup  ## local Ray head on 127.0.0.1 with token authentication
	$(VENV)/bin/python -m ray_effreason.local_cluster start --dashboard-port $(DASHBOARD_PORT)

ray-stop:
	$(VENV)/bin/python -m ray_effreason.local_cluster stop

sweep: setup  ## the main job: tiny reasoner -> alpha family -> table and plots, via `ray job submit`
	$(VENV)/bin/python -m ray_effreason.local_cluster sweep --dashboard-port $(DASHBOARD_PORT) -- $(SWEEP_ARGS)

evaluate: setup  ## e.g. make evaluate ARGS="--models runs/sweep/... --tasks synthetic"
	$(PY) jobs/evaluate.py $(ARGS)

bench: setup
	$(PY) bench/bench_grading.py
	$(PY) bench/bench_rl_vs_trl.py

clean:
	rm -rf runs .pytest_cache
