"""The controller's probe: held-out training prompts, sampled once each step at the evaluation temperature with
the weights that step updates; the controller reads their accuracy and mean tokens (alpha_controller.py) and the
floor's guard their accuracy (floor_guard.py)."""

from __future__ import annotations

from typing import Any

from ray_effreason.actors.generator import SampleRequest
from ray_effreason.config import TrainConfig
from ray_effreason.evaluation import sample_metrics
from ray_effreason.seeding import sample_seed


def held_out_probe(examples: list[Any], config: TrainConfig) -> tuple[list[Any], list[Any]]:
    """(the training prompts, the controller's probe prompts): the last --controller-probe-prompts training
    rows are held out of training when a controller reads a probe (alpha_controller.py)."""
    count = config.controller.controller_probe_prompts if config.controller.enabled else 0
    if not count:
        return examples, []
    if len(examples) - count < config.rollout.prompts_per_step:
        raise ValueError(f"--controller-probe-prompts {count} leaves {len(examples) - count} of {len(examples)} "
                         f"training prompts, fewer than --prompts-per-step {config.rollout.prompts_per_step}")
    return examples[:-count], examples[-count:]


def probe_requests(examples: list[Any], seed: int, step: int) -> list[SampleRequest]:
    """Each probe prompt once, with its own seed for `step` (the final probe: step = the number of steps)."""
    return [SampleRequest(index, index, 0, example.prompt, sample_seed(seed, "probe", step, index, 0))
            for index, example in enumerate(examples)]


def probe_metrics(probe: list[Any], grades: list[Any], examples: list[Any]) -> dict[str, float]:
    """`probe/accuracy` and `probe/mean_tokens` of the probe's samples (evaluation.sample_metrics, training's
    verdict: a truncated sample is not correct)."""
    shared = sample_metrics([
        {"problem_id": examples[c.prompt_index].id, "sample_index": 0, "num_tokens": c.num_tokens,
         "finish_reason": "length" if grade.truncated else "stop", "extracted_answer": None, "correct": grade.correct,
         "level": examples[c.prompt_index].level, "min_tokens": examples[c.prompt_index].min_tokens}
        for c, grade in zip(probe, grades)])
    return {f"probe/{name}": float(shared[name]) for name in ("accuracy", "mean_tokens")}
