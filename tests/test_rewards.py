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
