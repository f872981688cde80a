"""A real learning test: the whole RL system (Ray actors, DeepSpeed, gloo sync) improves a tiny model.

24 level-1 synthetic problems ("Compute (a + b) mod 10."), a tiny Qwen2 model given a short SFT on verbose
traces (so it answers some of them and rambles), then length-penalized RL through `driver.train` on the
same 24 prompts (a toy: RL can raise accuracy by learning these answers within a few dozen steps):
the reward must rise clearly and, with alpha > 0, correct answers must lose at least half of their
tokens above min_tokens.
"""

import json

import numpy as np
import pytest

from ray_effreason.driver import train
from ray_effreason.tasks.synthetic import SyntheticArithmetic
from ray_effreason.tiny_reasoner import build_tokenizer

pytestmark = pytest.mark.ray  # starts a Ray cluster




@pytest.mark.slow
def test_rl_raises_reward_and_shortens_correct_answers(ray_local, level_one_reasoner, cpu_train_config, tmp_path):
    model_dir, data = level_one_reasoner  # the short SFT (conftest.py), shared with the comparison job test
    config = cpu_train_config(
        model_dir, tmp_path / "rl", task_path=str(data), max_prompts=24, steps=30, save_every=30, seed=0,
        samples_per_prompt=8, prompts_per_step=8, max_new_tokens=48, generation_batch_size=64,  # as measured
        alpha=0.4, kl_coef=1e-3, lr=5e-4, train_batch_size=32, micro_batch_size=16, num_cpus_per_actor=1)
    train(config)
    metrics = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    first, last = metrics[:6], metrics[-6:]
    mean = lambda rows, key: float(np.nanmean([row[key] for row in rows]))  # noqa: E731
    assert mean(last, "reward") > mean(first, "reward") + 0.1, [row["reward"] for row in metrics]
    # Redundant tokens (above the shortest correct trace, EOS counted on both sides) at least halve.
    floor = float(np.mean([example.min_tokens for example in
                           SyntheticArithmetic(data, tokenizer=build_tokenizer()).examples]))
    assert mean(last, "mean_tokens_correct") - floor < 0.5 * (mean(first, "mean_tokens_correct") - floor), \
        (floor, [row["mean_tokens_correct"] for row in metrics])
    assert mean(last, "accuracy") >= mean(first, "accuracy")
