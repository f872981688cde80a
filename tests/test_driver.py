"""The driver's pure glue (sub-second): data order, seeds, checkpoint discovery, step metrics."""

import json

import numpy as np
import pytest

from ray_effreason.actors.verifier import Grade
from ray_effreason.driver import prompt_indices, step_metrics
from ray_effreason.run_checkpoints import latest_checkpoint
from ray_effreason.seeding import sample_seed
from ray_effreason.tasks.base import Example


def test_prompt_indices_cover_each_epoch_once_and_change_order_between_epochs():
    first_epoch = [index for step in range(4) for index in prompt_indices(10, 2, step, seed=3)]
    assert len(first_epoch) == 8 and len(set(first_epoch)) == 8  # 10 // 2 = 5 steps per epoch: no repeats
    epoch = [prompt_indices(10, 2, step, seed=3) for step in range(5)]
    next_epoch = [prompt_indices(10, 2, step, seed=3) for step in range(5, 10)]
    assert sorted(sum(epoch, [])) == list(range(10)) and epoch != next_epoch
    assert prompt_indices(10, 2, 7, seed=3) == prompt_indices(10, 2, 7, seed=3)  # a pure function of the step
    with pytest.raises(ValueError, match="fewer than prompts_per_step"):
        prompt_indices(3, 4, 0, seed=0)


def test_sample_seed_is_deterministic_and_distinct_per_sample():
    seeds = {sample_seed(42, "train", step, p, g) for step in range(3) for p in range(8) for g in range(8)}
    assert len(seeds) == 3 * 8 * 8
    assert sample_seed(42, "train", 1, 2, 3) == sample_seed(42, "train", 1, 2, 3) != sample_seed(43, "train", 1, 2, 3)
    assert all(0 <= seed < 2**32 for seed in seeds)
    assert sample_seed(0, "a", 1) != sample_seed(0, "a1")  # parts are written out, never glued


def test_latest_checkpoint_ignores_incomplete_and_staging_dirs(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for name, complete in (("step-2", True), ("step-10", True), ("step-12", False), ("step-20.tmp", True)):
        path = tmp_path / "checkpoints" / name
        path.mkdir(parents=True)
        if complete:
            (path / "driver_state.json").write_text(json.dumps({"step": 0}))
    assert latest_checkpoint(tmp_path).name == "step-10"  # step-12 lacks driver_state.json (written last)


def test_step_metrics_use_the_evaluation_names_and_training_verdicts():
    batch = [Example(id="a", prompt="", gold="1", level=1, min_tokens=2),
             Example(id="b", prompt="", gold="1", level=2, min_tokens=4)]
    correct = np.array([[True, False], [False, False]])  # (B, G)
    num_tokens = np.array([[2, 10], [4, 8]])
    grades = [Grade(c, c, t) for c, t in ((True, False), (False, True), (False, False), (False, False))]
    metrics = step_metrics(1, 0.2, correct, num_tokens, np.zeros((2, 2)), grades, batch)
    assert metrics["accuracy"] == 0.25 and metrics["mean_tokens"] == 6.0 and metrics["max_tokens"] == 10
    assert metrics["truncation_rate"] == 0.25 and metrics["mean_tokens_correct"] == 2.0
    assert metrics["tokens_over_min_tokens"] == pytest.approx(((2 + 10) / 2 / 2 + (4 + 8) / 2 / 4) / 2)
    assert metrics["all_wrong_groups"] == 0.5 and metrics["all_correct_groups"] == 0.0


def test_long_training_prompts_fail_before_step_0_naming_rows_or_are_dropped(tiny_model):
    from ray_effreason.config import TrainConfig
    from ray_effreason.config_tree import from_flat
    from ray_effreason.driver import fitting_prompts
    from ray_effreason.tasks.synthetic import SyntheticArithmetic

    examples = SyntheticArithmetic(split="train", num_examples=12, seed=0).examples  # levels 1..6: lengths differ
    config = from_flat(TrainConfig, {"task": "synthetic", "max_prompt_tokens": 20})
    with pytest.raises(ValueError, match=r"of 12 training prompts of synthetic exceed --max-prompt-tokens 20: "
                                         r"synthetic-train-0-\d+ \(\d+ tokens\).*--drop-long-prompts"):
        fitting_prompts(examples, tiny_model, config)
    kept, dropped = fitting_prompts(examples, tiny_model, from_flat(TrainConfig, {
        "task": "synthetic", "max_prompt_tokens": 20, "drop_long_prompts": True}))
    assert 0 < dropped < 12 and len(kept) == 12 - dropped
    assert fitting_prompts(examples, tiny_model, from_flat(TrainConfig, {"task": "synthetic"}))[1] == 0
