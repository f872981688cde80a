"""Advantages from (B, G) rewards: RLOO (the paper's choice), GRPO, and OpenRLHF-style batch whitening.

Inputs may be numpy arrays or torch tensors; the result is the same kind (and for torch the same
device). Everything is written with operations both libraries share, so torch is never imported here.
Integer/bool rewards are promoted to float (numpy float64, torch float32); float inputs keep their dtype.
"""

import numpy as np


def rloo_advantages(rewards):
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


def grpo_advantages(rewards, scale="group", eps=1e-6):
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


def whiten(values, mask=None, eps=1e-8):
    """Whiten over the whole batch: (v - mean) / sqrt(var), mean/var over all (valid) entries.

    OpenRLHF (and so the paper's fork) applies this to per-token advantages of the rollout batch,
    unconditionally (PAPER §1.4 caveat). With a mask the statistics are token-weighted: every valid
    token counts once, so long samples dominate. It is not per prompt, so alpha still matters across
    prompts, but the overall advantage scale is fixed per batch. Off by default in our learner.
    Masked-out entries come back as 0 (OpenRLHF leaves them at -mean/std; the loss ignores them either
    way). Across several learner ranks the sums below must be all-reduced first; this is one rank's view.

    >>> whiten(np.array([[1.0, 3.0, 99.0]]), mask=np.array([[True, True, False]]))
    array([[-1.,  1.,  0.]])
    """
    values = _float(values)
    if mask is None:
        centered = values - values.mean()
        var = (centered**2).mean()
        return centered / (var + eps) ** 0.5
    if tuple(mask.shape) != tuple(values.shape):
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal values shape {tuple(values.shape)}")
    valid = mask != 0
    count = (valid * 1.0).sum()  # bool -> float in either library
    if count == 0:
        raise ValueError("whiten needs at least one valid entry in mask")
    mean = _where(valid, values, 0.0).sum() / count
    centered = _where(valid, values - mean, 0.0)  # padding (even inf/NaN) never enters the statistics
    var = (centered**2).sum() / count
    return centered / (var + eps) ** 0.5


def compute_advantages(name, rewards, **kwargs):
    """Advantages by estimator name: "rloo" (the paper), "grpo" (std-scaled), "grpo_noscale".

    >>> compute_advantages("rloo", np.array([[1.0, 0.0]]))
    array([[ 1., -1.]])
    """
    estimators = {
        "rloo": rloo_advantages,
        "grpo": lambda r, **kw: grpo_advantages(r, scale="group", **kw),
        "grpo_noscale": lambda r, **kw: grpo_advantages(r, scale="none", **kw),
    }
    if name not in estimators:
        raise ValueError(f"unknown advantage estimator {name!r}; valid: {sorted(estimators)}")
    return estimators[name](rewards, **kwargs)


# ---------------------------------------------------------------------------------------------------
# numpy / torch plumbing (shared operations only: +, -, *, /, **, .sum(dim), .mean(dim), indexing)


def _is_torch(value):
    return type(value).__module__.split(".")[0] == "torch"


def _float(values):
    if _is_torch(values):
        return values if values.is_floating_point() else values.float()
    values = np.asarray(values)
    return values if np.issubdtype(values.dtype, np.floating) else values.astype(np.float64)


def _float_rows(values, name):
    values = _float(values)
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (B prompts, G samples), got shape {tuple(values.shape)}")
    return values


def _where(condition, a, b):
    # torch.Tensor.where(cond, other) and np.where share no spelling; pick by kind.
    if _is_torch(a):
        return a.where(condition, b)
    return np.where(condition, a, b)
