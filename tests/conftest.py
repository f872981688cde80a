"""Shared fixtures: the benchmark data beside the repo, a tiny model, a CPU training config, GPU skipping."""

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# OpenMP threads sleep instead of spinning while they wait, in this process and in every process it starts (Ray
# instances, their actors, job drivers), as the actors on CPU already do (actors/launch.py `_cpu_env`): torch is
# imported after this line. With spinning threads a loaded 2-core machine crawls: the tiny SFT below measured
# 56 s for 15 steps with 2 threads next to other work, 4 s with them passive.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def shared_data_dir() -> Path:
    """`../shared/data` beside the repo (or $RAY_EFFREASON_DATA). Tests read it; the repo never copies it."""
    path = Path(os.environ.get("RAY_EFFREASON_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        raise FileNotFoundError(f"benchmark data not found at {path}; set RAY_EFFREASON_DATA")
    return path


# The in-process tests' Ray instance: started by the first module that asks for it and kept for the next ones
# (starting one costs ~6 s on 2 cores, and a dozen modules need one), shut down when the session ends.
# address="local": a fresh instance even when a `ray start` cluster runs on this machine. A module that needs
# none (test_bad_input checks that bad input fails before Ray starts) or other settings (test_vllm: a runtime
# env) shuts it down; the next module that asks for it starts it again.
RAY_LOCAL = {"address": "local", "num_cpus": 8, "include_dashboard": False}


@pytest.fixture(scope="session")
def _ray_session():
    import ray

    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_local(_ray_session):
    import ray

    if not ray.is_initialized():
        ray.init(**RAY_LOCAL)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return shared_data_dir()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """An untrained tiny Qwen2 model and its tokenizer, built locally (HF format); a path."""
    from ray_effreason.tiny_reasoner import build_model, build_tokenizer

    path = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_tokenizer()
    build_model(tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def retrained_model(tiny_model, tmp_path_factory) -> str:
    """`tiny_model` with other weights (seeded noise on every tensor): the same architecture and tokenizer, as a
    checkpoint of a training run is; its samples differ from `tiny_model`'s. A path."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path_factory.mktemp("retrained")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(path)
    return str(path)


def records_by_model(records_path) -> dict[str, list[dict]]:
    """An evaluation's records (eval_runner RECORDS), grouped by model name."""
    from ray_effreason.evaluation import read_records

    rows = read_records(records_path).to_pylist()
    return {name: [row for row in rows if row["model"] == name] for name in {row["model"] for row in rows}}


def same_records(left, right) -> bool:
    """Whether two evaluations recorded the same samples (every field but the model's name), in problem order."""
    def key(row):
        return row["task"], row["problem_id"], row["sample_index"]

    return ([{**row, "model": None} for row in sorted(left, key=key)]
            == [{**row, "model": None} for row in sorted(right, key=key)])


@dataclass(frozen=True)
class LocalHead:
    """The test session's Ray head (local_cluster.start): 127.0.0.1, token auth, its own temp dir and ports."""

    dashboard_port: int = 8366
    gcs_port: int = 6391
    temp_dir: str = "/tmp/rayeff-test-6391"

    def submit(self, *script_and_flags: str, timeout_s: float = 400) -> subprocess.CompletedProcess:
        """`ray job submit` of `python SCRIPT FLAGS` from the repo root with the local runtime env (working dir
        uploaded), waiting for the job to end; its output is the job's log."""
        from ray_effreason import local_cluster

        address, job_id = f"http://127.0.0.1:{self.dashboard_port}", f"test-{uuid.uuid4().hex[:12]}"
        command = [local_cluster.ray_cli(), "job", "submit", "--address", address, "--submission-id", job_id,
                   "--runtime-env", str(local_cluster.REPO / "cluster" / "runtime_env.local.yaml"),
                   "--", "python", *script_and_flags]
        try:
            return subprocess.run(command, cwd=local_cluster.REPO, env=local_cluster.ray_environment(),
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:  # stop the job too, or it runs on under the tests that follow
            subprocess.run([local_cluster.ray_cli(), "job", "stop", "--address", address, job_id],
                           env=local_cluster.ray_environment(), capture_output=True, timeout=60)
            raise


@pytest.fixture(scope="session")
def local_head() -> LocalHead:
    """One head for every test that needs `ray start` (what it listens on, the jobs, `make monitor`): started
    at the first such test, stopped when the session ends, never a Ray the user has running (its own temp dir;
    the teardown stops that head only). Tests on it must not run concurrently with another session's."""
    from ray_effreason import local_cluster

    head = LocalHead()
    local_cluster.stop(head.temp_dir)
    local_cluster.start(head.dashboard_port, num_cpus=8, gcs_port=head.gcs_port, temp_dir=head.temp_dir)
    yield head
    local_cluster.stop(head.temp_dir)


@pytest.fixture(scope="session")
def level_one_reasoner(tmp_path_factory) -> tuple[str, str]:
    """(model path, problems file): the tiny model after 60 SFT steps on 24 level-1 problems ("Compute (a + b)
    mod 10."), and those problems as a training file. About 2 in 3 of its samples are correct, of varied lengths,
    and it rambles: RL can shorten it (test_learning), SFT keeps completions and DPO gets pairs (test_jobs).
    Built once, on one thread (a few seconds; no faster on two at this size)."""
    import torch

    from ray_effreason.tasks.synthetic import SyntheticArithmetic, write_examples
    from ray_effreason.tiny_reasoner import build_model, build_tokenizer, sft_train

    path = tmp_path_factory.mktemp("level-one")
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=0)
    task = SyntheticArithmetic(split="train", num_examples=24, levels=(1,), seed=0)
    threads = torch.get_num_threads()  # sft_train sets this process's
    sft_train(model, tokenizer, task, steps=60, batch_size=32, lr=3e-3, seed=0, num_threads=1, warmup_steps=10)
    torch.set_num_threads(threads)
    model.save_pretrained(path / "model")
    tokenizer.save_pretrained(path / "model")
    return str(path / "model"), str(write_examples(task.examples, path / "level1.jsonl"))


# A training run of the in-process RL tests (test_learning, test_loggers, test_faults): the synthetic task on CPU,
# transformers generation (the loop, not the backend, is under test; vLLM: test_vllm.py), plain data parallelism.
CPU_TRAINING = {"task": "synthetic", "device": "cpu", "generator_backend": "transformers", "zero_stage": 0,
                "warmup_steps": 0, "max_prompt_tokens": 64, "num_verifiers": 1}


@pytest.fixture(scope="session")
def cpu_train_config():
    """`cpu_train_config(model, output_dir, **flat)`: a TrainConfig of CPU_TRAINING with the test's own flat
    values (config names as on the command line, `steps=2`), validated as the command line would be."""
    from ray_effreason.config import TrainConfig
    from ray_effreason.config_tree import from_flat

    def make(model: str, output_dir: str | Path, **flat) -> TrainConfig:
        return from_flat(TrainConfig, {**CPU_TRAINING, "model": str(model), "output_dir": str(output_dir), **flat},
                         where="the test's config")

    return make


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
