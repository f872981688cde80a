"""Shared fixtures: the benchmark data beside the repo, GPU skipping."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """`../shared/data` beside the repo (or $RAY_EFFREASON_DATA). Tests read it; the repo never copies it."""
    path = Path(os.environ.get("RAY_EFFREASON_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        raise FileNotFoundError(f"benchmark data not found at {path}; set RAY_EFFREASON_DATA")
    return path


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
