"""Advantage estimators: RLOO (the paper), GRPO with/without std scaling."""

import numpy as np
import pytest

from ray_effreason.advantages import compute_advantages, grpo_advantages, rloo_advantages
from ray_effreason.rewards import length_penalized_rewards


def random_rewards(seed, shape=(6, 8)):
    return np.random.default_rng(seed).random(shape)


def test_rloo_hand_computed():
    rewards = np.array([[1.0, 0.0, 0.5], [0.2, 0.2, 0.8]])
    expected = np.array([[1 - 0.25, 0 - 0.75, 0.5 - 0.5], [0.2 - 0.5, 0.2 - 0.5, 0.8 - 0.2]])
    np.testing.assert_allclose(rloo_advantages(rewards), expected, rtol=1e-12)


def test_rloo_matches_loop_reference_and_sums_to_zero_per_group():
    rewards = random_rewards(0)
    B, G = rewards.shape
    reference = np.array(
        [[rewards[b, i] - sum(rewards[b, j] for j in range(G) if j != i) / (G - 1) for i in range(G)] for b in range(B)]
    )
    advantages = rloo_advantages(rewards)
    np.testing.assert_allclose(advantages, reference, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(advantages.sum(axis=1), 0.0, atol=1e-12)


def test_rloo_needs_two_samples():
    with pytest.raises(ValueError, match="G >= 2"):
        rloo_advantages(np.ones((3, 1)))


def test_rloo_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        rloo_advantages(np.ones(8))


def test_rloo_all_zero_group_gives_zero_advantages():
    np.testing.assert_array_equal(rloo_advantages(np.zeros((2, 8))), np.zeros((2, 8)))


def test_grpo_hand_computed():
    rewards = np.array([[1.0, 0.0, 0.0, 0.0]])
    centered = np.array([[0.75, -0.25, -0.25, -0.25]])
    std = np.sqrt((0.75**2 + 3 * 0.25**2) / 3)  # ddof 1
    np.testing.assert_allclose(grpo_advantages(rewards, scale="none"), centered)
    np.testing.assert_allclose(grpo_advantages(rewards, eps=0.0), centered / std)


def test_grpo_equal_rewards_give_zero_not_nan():
    advantages = grpo_advantages(np.full((2, 8), 0.9))
    np.testing.assert_array_equal(advantages, np.zeros((2, 8)))


def test_grpo_group_scale_cancels_alpha_in_all_correct_group():
    # PAPER §1.4: in an all-correct group rewards are affine in alpha * sigmoid(z), so dividing by the
    # group std makes advantages the same for every alpha; without scaling they grow with alpha.
    correct = np.ones((1, 8), bool)
    num_tokens = np.arange(1000, 5000, 500)[None, :]
    low = length_penalized_rewards(correct, num_tokens, 0.05)
    high = length_penalized_rewards(correct, num_tokens, 0.4)
    np.testing.assert_allclose(grpo_advantages(low, eps=0.0), grpo_advantages(high, eps=0.0), rtol=1e-9)
    unscaled_low, unscaled_high = grpo_advantages(low, scale="none"), grpo_advantages(high, scale="none")
    np.testing.assert_allclose(unscaled_high, 8 * unscaled_low, rtol=1e-9)  # alpha 0.4 = 8 x alpha 0.05
    # RLOO (the paper's choice) also keeps alpha: it is G/(G-1) times the unscaled GRPO advantage.
    np.testing.assert_allclose(rloo_advantages(high), 8 / 7 * unscaled_high, rtol=1e-9)


def test_grpo_unknown_scale_lists_valid():
    with pytest.raises(ValueError, match="group"):
        grpo_advantages(np.ones((1, 4)), scale="batch")


@pytest.mark.parametrize("name", ["rloo", "grpo", "grpo_noscale"])
def test_advantages_permutation_within_group_permutes_output(name):
    rewards = random_rewards(1)
    advantages = compute_advantages(name, rewards)
    perm = np.random.default_rng(2).permutation(rewards.shape[1])
    np.testing.assert_allclose(compute_advantages(name, rewards[:, perm]), advantages[:, perm], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["rloo", "grpo", "grpo_noscale"])
def test_advantages_changing_one_row_leaves_others_unchanged(name):
    rewards = random_rewards(3)
    changed = rewards.copy()
    changed[4] = random_rewards(4, (8,))
    before, after = compute_advantages(name, rewards), compute_advantages(name, changed)
    np.testing.assert_array_equal(np.delete(after, 4, axis=0), np.delete(before, 4, axis=0))
    assert not np.array_equal(after[4], before[4])


def test_advantages_promote_bool_and_int_rewards_to_float():
    for rewards in (np.array([[True, False]]), np.array([[1, 0]])):
        advantages = rloo_advantages(rewards)
        assert advantages.dtype == np.float64
        np.testing.assert_array_equal(advantages, [[1.0, -1.0]])


def test_advantages_do_not_mutate_inputs():
    rewards = np.array([[1.0, 0.0, 0.5]])
    for name in ["rloo", "grpo", "grpo_noscale"]:
        compute_advantages(name, rewards)
    np.testing.assert_array_equal(rewards, [[1.0, 0.0, 0.5]])


def test_compute_advantages_unknown_name_lists_keys():
    with pytest.raises(ValueError, match="grpo_noscale.*rloo"):
        compute_advantages("ppo", np.ones((1, 4)))


