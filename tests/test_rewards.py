"""The paper's length-penalized reward (PAPER §1): hand-computed cases, edge cases."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ray_effreason.advantages import rloo_advantages
from ray_effreason.rewards import length_penalized_rewards

WORKED_LENGTHS = np.arange(1000, 5000, 500)[None, :]  # (1, 8): 1000, 1500, ..., 4500 tokens
ALL_CORRECT = np.ones((1, 8), dtype=bool)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_length_penalty_hand_computed_three_correct():
    # Correct lengths 100, 200, 300: mean 200, population std sqrt(20000/3).
    correct = np.array([[True, True, False, True]])
    num_tokens = np.array([[100, 200, 7, 300]])
    std = math.sqrt(20000 / 3)
    z = 100 / (std + 1e-7)
    expected = [1 - 0.3 * sigmoid(-z), 1 - 0.3 * 0.5, 0.0, 1 - 0.3 * sigmoid(z)]
    np.testing.assert_allclose(length_penalized_rewards(correct, num_tokens, 0.3)[0], expected, rtol=1e-12)


def test_length_penalty_no_correct_gives_zeros():
    rewards = length_penalized_rewards(np.zeros((2, 4), bool), np.full((2, 4), 123), 0.2)
    np.testing.assert_array_equal(rewards, np.zeros((2, 4)))
    assert np.isfinite(rewards).all()


def test_length_penalty_one_correct_gets_half_alpha():
    correct = np.array([[False, False, True, False]])
    rewards = length_penalized_rewards(correct, np.array([[5, 10, 4000, 20]]), 0.4)
    np.testing.assert_array_equal(rewards, [[0.0, 0.0, 0.8, 0.0]])


def test_length_penalty_equal_lengths_get_half_alpha_and_zero_rloo():
    rewards = length_penalized_rewards(ALL_CORRECT, np.full((1, 8), 2345), 0.2)
    np.testing.assert_array_equal(rewards, np.full((1, 8), 0.9))
    np.testing.assert_array_equal(rloo_advantages(rewards), np.zeros((1, 8)))


def test_length_penalty_alpha_zero_is_correctness():
    rng = np.random.default_rng(0)
    correct = rng.random((5, 8)) < 0.5
    num_tokens = rng.integers(0, 32000, (5, 8))
    rewards = length_penalized_rewards(correct, num_tokens, 0.0)
    np.testing.assert_array_equal(rewards, correct.astype(float))


def test_length_penalty_all_correct_ordered_by_length_in_bounds():
    rng = np.random.default_rng(1)
    num_tokens = rng.permutation(np.arange(100, 900, 100))[None, :]
    rewards = length_penalized_rewards(ALL_CORRECT, num_tokens, 0.2)[0]
    order = np.argsort(num_tokens[0])
    assert (np.diff(rewards[order]) < 0).all()  # shorter is strictly better
    # |z| <= sqrt(G - 1) (PAPER §1.2): rewards in [1 - alpha*sigmoid(sqrt 7), 1 - alpha*sigmoid(-sqrt 7)].
    assert rewards.min() >= 1 - 0.2 * sigmoid(math.sqrt(7)) - 1e-12
    assert rewards.max() <= 1 - 0.2 * sigmoid(-math.sqrt(7)) + 1e-12


def test_length_penalty_truncated_marked_wrong_by_caller_is_excluded():
    # A truncated sample (no EOS, at max_new_tokens) is passed as not correct. It must not move the
    # statistics of the others, and as the only "correct" one it must not crash (the paper's KeyError).
    num_tokens = np.array([[1000, 2000, 32000]])
    with_truncated = length_penalized_rewards(np.array([[True, True, False]]), num_tokens, 0.2)
    without = length_penalized_rewards(np.array([[True, True]]), num_tokens[:, :2], 0.2)
    np.testing.assert_array_equal(with_truncated[:, :2], without)
    assert with_truncated[0, 2] == 0.0
    only_truncated = length_penalized_rewards(np.array([[False, False, False]]), num_tokens, 0.2)
    np.testing.assert_array_equal(only_truncated, np.zeros((1, 3)))


@pytest.mark.parametrize(
    "alpha, shortest, longest, rloo_range",
    [(0.05, 0.991, 0.959, 0.018), (0.1, 0.982, 0.918, 0.037), (0.2, 0.964, 0.836, 0.074), (0.4, 0.929, 0.671, 0.147)],
)
def test_length_penalty_matches_paper_worked_table(alpha, shortest, longest, rloo_range):
    rewards = length_penalized_rewards(ALL_CORRECT, WORKED_LENGTHS, alpha)
    assert rewards[0, 0] == pytest.approx(shortest, abs=5e-4)
    assert rewards[0, -1] == pytest.approx(longest, abs=5e-4)
    advantages = rloo_advantages(rewards)[0]
    assert advantages.max() == pytest.approx(rloo_range, abs=5e-4)
    assert advantages.min() == pytest.approx(-rloo_range, abs=5e-4)


def test_length_penalty_four_of_eight_correct_paper_advantages():
    correct = np.array([[True, False, True, False, True, False, True, False]])
    num_tokens = np.array([[1000, 9999, 1500, 3, 2000, 32000, 2500, 40]])
    advantages = rloo_advantages(length_penalized_rewards(correct, num_tokens, 0.2))[0]
    assert advantages[correct[0]].min() == pytest.approx(0.45, abs=0.005)
    assert advantages[correct[0]].max() == pytest.approx(0.58, abs=0.005)
    np.testing.assert_allclose(advantages[~correct[0]], -0.514, atol=0.001)


def test_length_penalty_one_of_eight_correct_paper_advantages():
    correct = np.zeros((1, 8), bool)
    correct[0, 3] = True
    advantages = rloo_advantages(length_penalized_rewards(correct, WORKED_LENGTHS, 0.2))[0]
    assert advantages[3] == pytest.approx(0.9)
    np.testing.assert_allclose(np.delete(advantages, 3), -0.9 / 7)
    assert -0.9 / 7 == pytest.approx(-0.129, abs=5e-4)


def test_length_penalty_permutation_within_group_permutes_rewards():
    rng = np.random.default_rng(2)
    correct = rng.random((4, 8)) < 0.7
    num_tokens = rng.integers(1, 5000, (4, 8))
    rewards = length_penalized_rewards(correct, num_tokens, 0.2)
    for row in range(4):
        perm = rng.permutation(8)
        permuted = length_penalized_rewards(correct[:, perm], num_tokens[:, perm], 0.2)
        np.testing.assert_allclose(permuted[row], rewards[row, perm], rtol=1e-12)


def test_length_penalty_changing_one_row_leaves_others_unchanged():
    rng = np.random.default_rng(3)
    correct = rng.random((5, 8)) < 0.6
    num_tokens = rng.integers(1, 5000, (5, 8))
    rewards = length_penalized_rewards(correct, num_tokens, 0.2)
    correct2, num_tokens2 = correct.copy(), num_tokens.copy()
    correct2[2] = ~correct2[2]
    num_tokens2[2] = rng.integers(1, 5000, 8)
    rewards2 = length_penalized_rewards(correct2, num_tokens2, 0.2)
    np.testing.assert_array_equal(np.delete(rewards2, 2, axis=0), np.delete(rewards, 2, axis=0))
    assert not np.array_equal(rewards2[2], rewards[2])


def test_length_penalty_prompt_tokens_cancel():
    # The paper's LEN counts prompt + completion; a per-prompt constant shift leaves rewards unchanged.
    correct = np.array([[True, True, False, True]])
    num_tokens = np.array([[300, 1200, 50, 800]])
    np.testing.assert_allclose(
        length_penalized_rewards(correct, num_tokens + 512, 0.2),
        length_penalized_rewards(correct, num_tokens, 0.2),
        rtol=1e-12,
    )


def test_length_penalty_does_not_mutate_inputs():
    correct = np.array([[True, False, True]])
    num_tokens = np.array([[10, 20, 30]])
    length_penalized_rewards(correct, num_tokens, 0.2)
    np.testing.assert_array_equal(correct, [[True, False, True]])
    np.testing.assert_array_equal(num_tokens, [[10, 20, 30]])


@pytest.mark.parametrize("alpha", [1.0, 1.5, -0.1, float("nan"), "0.2", True])
def test_length_penalty_bad_alpha_raises_naming_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        length_penalized_rewards(ALL_CORRECT, WORKED_LENGTHS, alpha)


@pytest.mark.parametrize(
    "correct, num_tokens, match",
    [
        (np.ones(8, bool), np.ones(8), "2-D"),
        (np.ones((1, 8), bool), np.ones((1, 7)), "shape"),
        (np.ones((1, 2), bool), np.array([[5, -1]]), ">= 0"),
        (np.ones((1, 2), bool), np.array([[5, np.inf]]), "finite"),
        (np.array([[0, 2]]), np.array([[5, 6]]), "0/1"),
    ],
)
def test_length_penalty_bad_inputs_raise(correct, num_tokens, match):
    with pytest.raises(ValueError, match=match):
        length_penalized_rewards(correct, num_tokens, 0.2)


def test_length_penalty_zero_one_ints_accepted_as_correct():
    rewards = length_penalized_rewards(np.array([[1, 0, 1]]), np.array([[10, 20, 30]]), 0.2)
    as_bool = length_penalized_rewards(np.array([[True, False, True]]), np.array([[10, 20, 30]]), 0.2)
    np.testing.assert_array_equal(rewards, as_bool)


def test_rewards_and_advantages_import_without_torch():
    # The driver computes rewards and advantages; it must not pay for importing torch.
    code = "import sys, ray_effreason.rewards, ray_effreason.advantages; sys.exit('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0


# ---------------------------------------------------------------- the other length rewards (length_rewards.py)

from ray_effreason import length_rewards  # noqa: E402
from ray_effreason.config import RewardConfig  # noqa: E402
from ray_effreason.rewards import REWARDS, prompt_budgets, shaped_rewards  # noqa: E402
from ray_effreason.tasks.base import Example  # noqa: E402

BUDGET = 100  # the generation budget of the hand-computed cases: a sample of 100 tokens is truncated
ALL_WRONG = np.zeros((1, 4), bool)
ONE_CORRECT = np.array([[False, True, False, False]])
FOUR_LENGTHS = np.array([[20, 40, 60, 80]])
ALL_TRUNCATED = np.full((1, 4), BUDGET)


def reward_of(name, correct, num_tokens, **knobs):
    config = RewardConfig(reward=name, **knobs)
    return shaped_rewards(config, correct, num_tokens, alpha=0.2, max_new_tokens=BUDGET,
                          budgets=np.full(correct.shape[0], 50))


def test_rewards_dict_names_every_reward_and_the_config_reads_it():
    assert list(REWARDS) == ["arora_zanette", "kimi", "dapo_overlong", "cosine", "dler_truncation", "l1_max",
                             "pass_rate"]
    with pytest.raises(ValueError, match="arora_zanette"):
        RewardConfig(reward="nope")


def test_default_reward_is_the_papers():
    correct, num_tokens = np.array([[True, True, False]]), np.array([[10, 30, 5]])
    np.testing.assert_array_equal(shaped_rewards(RewardConfig(), correct, num_tokens, alpha=0.3, max_new_tokens=99),
                                  length_penalized_rewards(correct, num_tokens, 0.3))


@pytest.mark.parametrize("name", [name for name in REWARDS])
def test_every_reward_prefers_shorter_among_correct_or_ties(name):
    rewards = reward_of(name, np.ones((1, 4), bool), FOUR_LENGTHS, truncation_tokens=50, cosine_max_tokens=90,
                        l1_alpha=0.01)
    assert (np.diff(rewards[0]) <= 1e-12).all(), rewards  # never longer-is-better for correct answers
    assert np.isfinite(rewards).all()


@pytest.mark.parametrize("name", [name for name in REWARDS])
def test_every_reward_ranks_a_correct_answer_at_or_above_a_wrong_one_of_the_same_length(name):
    for length in (20, 60):
        rewards = reward_of(name, np.array([[True, False]]), np.array([[length, length]]), l1_alpha=0.01)
        assert rewards[0, 0] >= rewards[0, 1], (name, length, rewards)


# Kimi k1.5: lambda = 0.5 - (n - min) / (max - min) over the row; correct + lambda, wrong + min(0, lambda).

def test_kimi_hand_computed():
    rewards = length_rewards.kimi_length_rewards(np.array([[True, False, True, False]]), FOUR_LENGTHS, weight=1.0)
    # lambdas 0.5, 1/6, -1/6, -0.5
    np.testing.assert_allclose(rewards, [[1.5, 0.0, 1 - 1 / 6, -0.5]])


def test_kimi_edge_cases():
    np.testing.assert_allclose(length_rewards.kimi_length_rewards(ALL_WRONG, FOUR_LENGTHS), [[0, 0, -1 / 6, -0.5]])
    np.testing.assert_allclose(length_rewards.kimi_length_rewards(ONE_CORRECT, FOUR_LENGTHS),
                               [[0, 1 + 1 / 6, -1 / 6, -0.5]])
    np.testing.assert_array_equal(length_rewards.kimi_length_rewards(np.ones((1, 4), bool), np.full((1, 4), 7)),
                                  np.ones((1, 4)))  # equal lengths: lambda 0
    np.testing.assert_array_equal(length_rewards.kimi_length_rewards(ALL_WRONG, ALL_TRUNCATED), np.zeros((1, 4)))


def test_kimi_wrong_short_never_beats_long_correct_unless_weight_two_is_refused():
    # open-r1#360: alone, a long correct answer (-0.5) scores under a short wrong one (0). With correctness
    # added and weight < 2 it cannot: the longest correct gets 1 - w/2 > 0 >= any wrong sample.
    rewards = length_rewards.kimi_length_rewards(np.array([[False, True]]), np.array([[10, 1000]]), weight=1.9)
    assert rewards[0, 1] > rewards[0, 0]
    with pytest.raises(ValueError, match="open-r1#360"):
        length_rewards.kimi_length_rewards(np.array([[False, True]]), np.array([[10, 1000]]), weight=2.0)
    with pytest.raises(ValueError, match="kimi_weight"):
        RewardConfig(kimi_weight=2.0)


# DAPO: +-1 + soft overlong punishment, buffer [L_max - L_cache, L_max].

def test_dapo_hand_computed_and_from_config():
    rewards = length_rewards.dapo_overlong_rewards(np.array([[True, True, False, True]]), FOUR_LENGTHS,
                                                   max_tokens=80, buffer_tokens=40)
    np.testing.assert_allclose(rewards, [[1.0, 1.0, -1.5, 0.0]])
    # ratio 0.2 of max_new_tokens 100: buffer 20, expected 80
    np.testing.assert_allclose(reward_of("dapo_overlong", np.ones((1, 3), bool), np.array([[80, 90, 100]])),
                               [[1.0, 0.5, 0.0]])


def test_dapo_edge_cases():
    rewards = reward_of("dapo_overlong", ALL_WRONG, FOUR_LENGTHS)
    np.testing.assert_array_equal(rewards, np.full((1, 4), -1.0))
    np.testing.assert_array_equal(reward_of("dapo_overlong", ALL_WRONG, ALL_TRUNCATED), np.full((1, 4), -2.0))
    np.testing.assert_array_equal(reward_of("dapo_overlong", ONE_CORRECT, FOUR_LENGTHS), [[-1, 1, -1, -1]])
    np.testing.assert_array_equal(reward_of("dapo_overlong", np.ones((1, 4), bool), np.full((1, 4), 30)),
                                  np.ones((1, 4)))


# Cosine (Yeo et al.): r_T + (r_0 - r_T)(1 + cos(pi n / T)) / 2; exceed at the generation budget.

def test_cosine_hand_computed():
    rewards = length_rewards.cosine_length_rewards(np.array([[True, True, False, False]]), np.array([[25, 75, 25, 75]]),
                                                   max_tokens=100, truncation_tokens=100)
    c25, c75 = (1 + math.cos(math.pi / 4)) / 2, (1 + math.cos(3 * math.pi / 4)) / 2
    np.testing.assert_allclose(rewards, [[1 + c25, 1 + c75, -10 * c25, -10 * c75]])


def test_cosine_edge_cases_and_no_wraparound_past_T():
    np.testing.assert_array_equal(reward_of("cosine", ALL_WRONG, ALL_TRUNCATED), np.full((1, 4), -10.0))
    np.testing.assert_array_equal(reward_of("cosine", np.ones((1, 4), bool), ALL_TRUNCATED), np.full((1, 4), -10.0))
    equal = reward_of("cosine", np.ones((1, 4), bool), np.full((1, 4), 50))
    np.testing.assert_allclose(equal, np.full((1, 4), 1.5))
    one = reward_of("cosine", ONE_CORRECT, np.full((1, 4), 50))
    np.testing.assert_allclose(one, [[-5.0, 1.5, -5.0, -5.0]])
    # T = 50 below the budget: past T the reward stays at the long end (open-rs#4: cos would turn back up)
    past = reward_of("cosine", np.ones((1, 2), bool), np.array([[50, 90]]), cosine_max_tokens=50)
    np.testing.assert_allclose(past, [[1.0, 1.0]])


# DLER: 1 only for a correct answer within L.

def test_dler_hand_computed_and_edges():
    np.testing.assert_array_equal(reward_of("dler_truncation", np.ones((1, 4), bool), FOUR_LENGTHS,
                                            truncation_tokens=40), [[1, 1, 0, 0]])
    np.testing.assert_array_equal(reward_of("dler_truncation", ALL_WRONG, FOUR_LENGTHS, truncation_tokens=40),
                                  np.zeros((1, 4)))
    np.testing.assert_array_equal(reward_of("dler_truncation", ONE_CORRECT, FOUR_LENGTHS), [[0, 1, 0, 0]])
    np.testing.assert_array_equal(reward_of("dler_truncation", ALL_WRONG, ALL_TRUNCATED), np.zeros((1, 4)))


# L1-Max: correct * clip(alpha (budget - n) + delta, 0, 1), the budget per prompt.

def test_l1_max_hand_computed_per_prompt_budgets():
    correct = np.ones((2, 2), bool)
    rewards = length_rewards.l1_max_rewards(correct, np.array([[20, 80], [20, 80]]), np.array([50, 100]), alpha=0.01)
    np.testing.assert_allclose(rewards, [[0.8, 0.2], [1.0, 0.7]])


def test_l1_max_edge_cases():
    np.testing.assert_array_equal(reward_of("l1_max", ALL_WRONG, FOUR_LENGTHS, l1_alpha=0.01), np.zeros((1, 4)))
    np.testing.assert_allclose(reward_of("l1_max", ONE_CORRECT, FOUR_LENGTHS, l1_alpha=0.01), [[0, 0.6, 0, 0]])
    np.testing.assert_allclose(reward_of("l1_max", np.ones((1, 2), bool), np.full((1, 2), 50)), [[0.5, 0.5]])
    np.testing.assert_array_equal(reward_of("l1_max", ALL_WRONG, ALL_TRUNCATED), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="budgets"):
        shaped_rewards(RewardConfig(reward="l1_max"), ONE_CORRECT, FOUR_LENGTHS, alpha=0.2, max_new_tokens=BUDGET)


def test_l1_budget_is_written_in_the_prompt_and_reproducible():
    examples = [Example(id=f"e{index}", prompt=f"Compute ({index} + 1) mod 10.", gold="0") for index in range(3)]
    config = RewardConfig(reward="l1_max", l1_budget_min=10, l1_budget_max=20)
    prompted, budgets = prompt_budgets(config, examples, (0, 5))
    assert budgets.shape == (3,) and ((10 <= budgets) & (budgets <= 20)).all()
    for example, original, budget in zip(prompted, examples, budgets):
        assert example.prompt == f"{original.prompt} Think for maximum {budget} tokens."
        assert (example.id, example.gold) == (original.id, original.gold)
    again, budgets_again = prompt_budgets(config, examples, (0, 5))
    assert again == prompted and (budgets_again == budgets).all()
    assert prompt_budgets(RewardConfig(), examples, (0, 5)) == (examples, None)


# Pass-rate scaled: 1 - alpha * p * sigmoid(z).

def test_pass_rate_hand_computed():
    correct, num_tokens = np.array([[True, True, False, False]]), np.array([[10, 30, 5, 5]])
    z = 10 / (10 + 1e-7)
    np.testing.assert_allclose(length_rewards.pass_rate_rewards(correct, num_tokens, 0.4),
                               [[1 - 0.4 * 0.5 * sigmoid(-z), 1 - 0.4 * 0.5 * sigmoid(z), 0, 0]])


def test_pass_rate_edge_cases_all_correct_is_the_papers():
    lengths = np.array([[10, 20, 30, 40]])
    np.testing.assert_allclose(reward_of("pass_rate", np.ones((1, 4), bool), lengths),
                               length_penalized_rewards(np.ones((1, 4), bool), lengths, 0.2))
    np.testing.assert_array_equal(reward_of("pass_rate", ALL_WRONG, FOUR_LENGTHS), np.zeros((1, 4)))
    np.testing.assert_allclose(reward_of("pass_rate", ONE_CORRECT, FOUR_LENGTHS), [[0, 1 - 0.2 / 8, 0, 0]])
    np.testing.assert_allclose(reward_of("pass_rate", np.ones((1, 4), bool), np.full((1, 4), 9)),
                               np.full((1, 4), 0.9))
    np.testing.assert_array_equal(reward_of("pass_rate", ALL_WRONG, ALL_TRUNCATED), np.zeros((1, 4)))
