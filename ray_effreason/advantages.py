"""Advantages from (B, G) rewards: RLOO (the paper's choice) and GRPO, pure numpy.

`rewards` is a (B, G) numpy array (B prompts, G samples each); integer/bool rewards are promoted to
float64, float inputs keep their dtype. OpenRLHF's batch whitening (PAPER.md §1.4) spans micro-batches
and ranks, so it lives with the learner's batching (batching.py), not here.
"""

import numpy as np


def rloo_advantages(rewards: np.ndarray) -> np.ndarray:
    """REINFORCE leave-one-out: A_i = r_i - (sum_j r_j - r_i) / (G - 1), per prompt (row).

    The paper's estimator (PAPER §1.4, OpenRLHF `--advantage_estimator rloo`). No std scaling, so
    alpha keeps controlling how strongly length is pushed down. Each row sums to zero.

    >>> rloo_advantages(np.array([[0.9, 0, 0, 0, 0, 0, 0, 0]])).round(3)  # 1 of 8 correct, alpha 0.2
    array([[ 0.9  , -0.129, -0.129, -0.129, -0.129, -0.129, -0.129, -0.129]])
    """
    rewards = _float_rows(rewards, "rewards")
    group_size = rewards.shape[1]
    if group_size < 2:
        raise ValueError(f"RLOO needs G >= 2 samples per prompt (leave-one-out baseline), got G = {group_size}")
    total = rewards.sum(1)[:, None]  # (B, 1)
    return rewards - (total - rewards) / (group_size - 1)


def grpo_advantages(rewards: np.ndarray, scale: str = "group", eps: float = 1e-6) -> np.ndarray:
    """GRPO: r - group mean, divided by the group std when scale == "group" (not when "none").

    The std is the unbiased one (ddof 1), as in TRL, verl and OpenRLHF's group_norm; `eps` guards a
    group whose rewards are all equal (advantages 0 then).

    Why the paper avoids scale="group" (PAPER §1.4): in an all-correct group the rewards are
    r_i = 1 - alpha * sigmoid(z_i), affine in alpha * sigmoid(z_i). Subtracting the mean removes the 1,
    dividing by the std removes the factor alpha: A_i = -(s_i - mean s) / std s with s = sigmoid(z),
    the same for every alpha > 0. The knob would stop controlling compression, and the gap between
    the shortest and longest correct answers would be as large as in a mixed group.

    >>> grpo_advantages(np.array([[1.0, 0.0, 1.0, 0.0]])).round(3)
    array([[ 0.866, -0.866,  0.866, -0.866]])
    """
    scalings = ("group", "none")
    if scale not in scalings:
        raise ValueError(f"unknown scale {scale!r}; valid: {list(scalings)}")
    rewards = _float_rows(rewards, "rewards")
    group_size = rewards.shape[1]
    centered = rewards - rewards.mean(1)[:, None]  # (B, G)
    if scale == "none":
        return centered
    if group_size < 2:
        raise ValueError(f"GRPO with scale='group' needs G >= 2 samples per prompt, got G = {group_size}")
    std = ((centered**2).sum(1)[:, None] / (group_size - 1)) ** 0.5  # (B, 1), ddof 1
    return centered / (std + eps)


ADVANTAGE_ESTIMATORS = {
    "rloo": rloo_advantages,
    "grpo": lambda rewards: grpo_advantages(rewards, scale="group"),
    "grpo_noscale": lambda rewards: grpo_advantages(rewards, scale="none"),
}


def compute_advantages(name: str, rewards: np.ndarray) -> np.ndarray:
    """Advantages by estimator name (`ADVANTAGE_ESTIMATORS`): "rloo" (the paper), "grpo", "grpo_noscale".

    >>> compute_advantages("rloo", np.array([[1.0, 0.0]]))
    array([[ 1., -1.]])
    """
    if name not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {name!r}; valid: {sorted(ADVANTAGE_ESTIMATORS)}")
    return ADVANTAGE_ESTIMATORS[name](rewards)


def _float_rows(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values)
    values = values if np.issubdtype(values.dtype, np.floating) else values.astype(np.float64)
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (B prompts, G samples), got shape {tuple(values.shape)}")
    return values
