"""The learner group's DeepSpeed settings: the engine config and the learning-rate schedule (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import torch

from ray_effreason.config import LearnerConfig


def deepspeed_config(learner: LearnerConfig, world_size: int, device: str) -> dict[str, Any]:
    accumulation = learner.train_batch_size // (learner.micro_batch_size * world_size)
    zero: dict[str, Any] = {"stage": learner.zero_stage}
    if learner.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "train_batch_size": learner.train_batch_size,
        "train_micro_batch_size_per_gpu": learner.micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": learner.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": device == "cuda"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    # No "scheduler" entry: DeepSpeed's WarmupLR gives 0, 0, 1/6, ... (one optimizer step late); the schedule
    # is `lr_schedule`'s, passed to deepspeed.initialize.
    if device == "cuda":
        # DeepSpeed picks FusedAdam (or CPUAdam with offload). AdamW betas (0.9, 0.95) as the paper.
        config["optimizer"] = {"type": "AdamW", "params": {"lr": learner.lr, "betas": [0.9, 0.95],
                                                           "weight_decay": learner.weight_decay}}
    else:
        # On CPU DeepSpeed's fused optimizers are unavailable: torch AdamW as a client optimizer.
        config["zero_allow_untested_optimizer"] = True
    return config


def lr_factor(step: int, warmup_steps: int) -> float:
    """HF `constant_with_warmup`, the paper's schedule (PAPER.md §2): lr * step / warmup, then lr.

    The factor of optimizer step `step` (0-based; the scheduler steps after each optimizer step):

    >>> [round(lr_factor(step, 6), 3) for step in range(8)]
    [0.0, 0.167, 0.333, 0.5, 0.667, 0.833, 1.0, 1.0]
    """
    return 1.0 if step >= warmup_steps else step / warmup_steps


def lr_schedule(learner: LearnerConfig):
    """The callable deepspeed.initialize builds the scheduler from, once it has made the optimizer."""
    return lambda optimizer: torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, learner.warmup_steps))
