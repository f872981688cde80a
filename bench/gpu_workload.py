"""bench/bench_gpu.py's model and prompts: the --model directory, the requests, the engine's length, the rollout.

Shared by the measurement cells (each runs bench_gpu.py again in a fresh process); no GPU needed to import.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DATASETS = {"math500": "test", "gsm8k": "test"}  # --dataset -> the split read from --data-dir
TINY = "untrained-tiny"


def resolve_model(name: str, output_dir: Path) -> str:
    """A local directory for --model: as given, the snapshot in the HF cache, or the tiny model built here."""
    if name == TINY:
        path = output_dir / TINY
        if not (path / "config.json").exists():
            from ray_effreason.tiny_reasoner import build_model, build_tokenizer

            tokenizer = build_tokenizer()
            build_model(tokenizer, seed=0).save_pretrained(path)
            tokenizer.save_pretrained(path)
        return str(path.resolve())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception as error:  # noqa: BLE001 (any lookup failure means: not cached here)
        raise SystemExit(f"--model {name}: not a local directory and not in the local Hugging Face cache "
                         f"({type(error).__name__}); download it first: huggingface-cli download {name}") from error


def workload(arguments: argparse.Namespace) -> tuple[list[str], list[list[int]], list[int]]:
    """(user message per request, its prompt tokens, its seed): --prompts problems x --samples."""
    from transformers import AutoTokenizer

    from ray_effreason.tasks import load_task
    from ray_effreason.tasks.base import prompt_token_ids

    task = load_task(arguments.dataset, path=arguments.data_dir / arguments.dataset, split=DATASETS[arguments.dataset])
    tokenizer = AutoTokenizer.from_pretrained(arguments.model)
    chosen = []  # the first problems that fit: the workers refuse a longer prompt, they never cut it
    for example in task.examples:
        ids = prompt_token_ids(example.prompt, tokenizer, "chat")
        if len(ids) <= arguments.max_prompt_tokens:
            chosen.append((example.prompt, ids))
        if len(chosen) == arguments.prompts:
            break
    messages = [message for message, _ in chosen for _ in range(arguments.samples)]
    ids = [ids for _, ids in chosen for _ in range(arguments.samples)]
    seeds = [1000 * p + g for p in range(len(chosen)) for g in range(arguments.samples)]
    return messages, ids, seeds


def max_model_len(arguments: argparse.Namespace) -> int:
    """What start_actors gives the engine (prompt + generation budget), capped as VLLMBackend caps it."""
    from transformers import AutoConfig

    positions = getattr(AutoConfig.from_pretrained(arguments.model), "max_position_embeddings", None)
    budget = arguments.max_prompt_tokens + arguments.max_new_tokens
    return min(budget, positions) if positions else budget


def rollout_config(arguments: argparse.Namespace, num_generators: int = 1):
    from ray_effreason.config import RolloutConfig

    return RolloutConfig(samples_per_prompt=max(arguments.samples, 2), temperature=arguments.temperature,
                         max_new_tokens=arguments.max_new_tokens, max_prompt_tokens=arguments.max_prompt_tokens,
                         num_generators=num_generators, generator_backend="vllm",
                         gpu_memory_utilization=arguments.gpu_memory_utilization)
