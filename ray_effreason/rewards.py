"""Rewards on a (B, G) batch: B prompts, G samples each (Arora & Zanette 2025, PAPER.md §1).

    r = 1[correct] * (1 - alpha * sigmoid((n - mean) / (std + 1e-7)))

mean and std are taken over the *correct* samples of the same prompt (one row) only. Grading is not
done here: callers pass `correct` (bool) and `num_tokens` (completion tokens) as (B, G) numpy arrays.
Pure numpy: the driver process that computes rewards stays light.

The other length rewards of the comparison (Kimi, DAPO, cosine, DLER, L1-Max, pass-rate scaled) are in
length_rewards.py; `REWARDS` names them all, `shaped_rewards` computes the one a RewardConfig chooses.
"""

import numbers
from typing import Any

import numpy as np

from ray_effreason import length_rewards

# Added to the std in the denominator, as the paper's reward server does (PAPER §1.2). With one correct
# sample, or several of equal length, n - mean = 0 exactly (integer token counts), so z = 0.
STD_EPS = 1e-7


def length_penalized_rewards(correct: np.ndarray, num_tokens: np.ndarray, alpha: float) -> np.ndarray:
    """The paper's length-penalized reward for a (B, G) batch.

    Args:
        correct: (B, G) bool (or 0/1) -- the sample's answer is right AND it ended with EOS.
        num_tokens: (B, G) completion lengths in tokens, >= 0.
        alpha: penalty strength in [0, 1); 0 gives plain correctness.

    Returns:
        (B, G) float64 rewards.

    Per prompt (row), z is the z-score of a correct sample's length among that row's correct samples,
    with the *population* std (ddof 0), as `np.std` in the paper's server. Wrong samples get 0 and do
    not enter the statistics. One correct sample, or equal lengths, give z = 0 and reward 1 - alpha/2;
    no correct sample gives a row of zeros (and zero RLOO advantages). With G samples |z| <= sqrt(G-1).

    Truncation is the CALLER's job: a sample cut off at max_new_tokens (no EOS) must be passed as not
    correct (the paper's `--check_eos`). It then never enters the statistics. The original code graded
    such a sample again in a second pass, and when it was the only correct one of its prompt the length
    table had no entry: KeyError, HTTP 500, training crash (PAPER §1.3). Here a truncated sample can
    neither shift the other samples' z nor crash anything.

    Lengths are completion tokens. The paper's LEN also counts the prompt (+ BOS), but that part is the
    same for all G samples of a prompt, so it cancels in n - mean and leaves std unchanged: the same z.

    Worked numbers (PAPER §1.3): 8 correct samples of 1000, 1500, ..., 4500 tokens, alpha = 0.2:

    >>> lengths = np.arange(1000, 5000, 500)[None, :]                  # (1, 8)
    >>> rewards = length_penalized_rewards(np.ones((1, 8), bool), lengths, 0.2)
    >>> np.round(rewards, 3)
    array([[0.964, 0.95 , 0.932, 0.911, 0.889, 0.868, 0.85 , 0.836]])

    Only correct samples count; a lone correct sample gets 1 - alpha/2:

    >>> length_penalized_rewards(np.array([[True, False, False]]), np.array([[900, 50, 32000]]), 0.2)
    array([[0.9, 0. , 0. ]])
    """
    correct, num_tokens = _validated(correct, num_tokens)
    # alpha >= 1: sigmoid(z) -> 1 for a long correct answer (with G samples it reaches
    # sigmoid(sqrt(G-1))), so 1 - alpha * sigmoid(z) <= 0 would score it at or below a wrong or
    # truncated answer (0). The policy could then gain by failing instead of finishing, and the
    # paper's guarantee that accuracy is preserved (Props. 4.3/4.4, alpha < 1) is gone.
    if isinstance(alpha, bool) or not (isinstance(alpha, numbers.Real) and 0.0 <= alpha < 1.0):
        raise ValueError(
            f"alpha must be a number in [0, 1), got {alpha!r}: with alpha >= 1 a long correct answer "
            "would score at or below a wrong one (reward 0)"
        )

    rewards = np.where(correct, 1.0 - alpha * correct_length_sigmoid(correct, num_tokens), 0.0)
    return rewards


def correct_length_sigmoid(correct: np.ndarray, num_tokens: np.ndarray) -> np.ndarray:
    """sigmoid(z), z the z-score of a correct sample's length among its row's correct samples; (B, G).

    Wrong samples get sigmoid(0) = 0.5, unused by the callers (they score wrong samples 0).
    """
    lengths = np.asarray(num_tokens, dtype=np.float64)  # (B, G)
    num_correct = correct.sum(axis=1, keepdims=True)  # (B, 1)
    denominator = np.maximum(num_correct, 1)  # rows with no correct sample: mean/std unused
    mean = np.where(correct, lengths, 0.0).sum(axis=1, keepdims=True) / denominator  # (B, 1)
    # Zero the deviation of wrong samples *before* dividing, so a wrong sample of any length cannot
    # produce an overflow or warning in exp() below.
    deviation = np.where(correct, lengths - mean, 0.0)  # (B, G)
    std = np.sqrt((deviation**2).sum(axis=1, keepdims=True) / denominator)  # (B, 1), ddof 0
    z = deviation / (std + STD_EPS)
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------------------------------------------
# the choice: --reward NAME (RewardConfig.reward); every function takes (correct, num_tokens, ...) on (B, G)

REWARDS = {
    "arora_zanette": length_penalized_rewards,
    "kimi": length_rewards.kimi_length_rewards,
    "dapo_overlong": length_rewards.dapo_overlong_rewards,
    "cosine": length_rewards.cosine_length_rewards,
    "dler_truncation": length_rewards.dler_truncation_rewards,
    "l1_max": length_rewards.l1_max_rewards,
    "pass_rate": length_rewards.pass_rate_rewards,
}


def reward_arguments(config: Any, *, alpha: float, max_new_tokens: int,
                     budgets: np.ndarray | None = None) -> dict[str, Any]:
    """The chosen reward's parameters from a RewardConfig: its own knobs, plus what the run knows (alpha,
    possibly the controller's; the generation budget; L1's per-prompt budgets)."""
    return {
        "arora_zanette": lambda: {"alpha": alpha},
        "pass_rate": lambda: {"alpha": alpha},
        "kimi": lambda: {"weight": config.kimi_weight},
        "dapo_overlong": lambda: {"max_tokens": config.overlong_max_tokens or max_new_tokens,
                                  "buffer_tokens": max(1, round(config.overlong_buffer_ratio * (
                                      config.overlong_max_tokens or max_new_tokens)))},
        "cosine": lambda: {"max_tokens": config.cosine_max_tokens or max_new_tokens,
                           "truncation_tokens": max_new_tokens},
        "dler_truncation": lambda: {"max_tokens": config.truncation_tokens or max_new_tokens},
        "l1_max": lambda: {"budgets": budgets, "alpha": config.l1_alpha, "delta": config.l1_delta},
    }[config.reward]()


def shaped_rewards(config: Any, correct: np.ndarray, num_tokens: np.ndarray, *, alpha: float, max_new_tokens: int,
                   budgets: np.ndarray | None = None) -> np.ndarray:
    """(B, G) rewards of the reward `config.reward` names (REWARDS), with its knobs from `config`."""
    if config.reward not in REWARDS:
        raise ValueError(f"unknown reward {config.reward!r}; choose one of {list(REWARDS)}")
    if config.reward == "l1_max" and budgets is None:
        raise ValueError("l1_max needs the per-prompt budgets written in the prompts (length_rewards.with_budgets)")
    arguments = reward_arguments(config, alpha=alpha, max_new_tokens=max_new_tokens, budgets=budgets)
    return REWARDS[config.reward](correct, num_tokens, **arguments)


# ---------------------------------------------------------------------------------------------------
# validation


def _validated(correct: np.ndarray, num_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes and values; return (correct as bool, num_tokens)."""
    correct_np = np.asarray(correct)
    if correct_np.ndim != 2:
        raise ValueError(f"correct must be 2-D (B prompts, G samples), got shape {correct_np.shape}")
    if correct_np.dtype != np.bool_:
        if not np.isin(correct_np, (0, 1)).all():
            raise ValueError("correct must be bool or 0/1 values")
        correct_np = correct_np.astype(bool)
    num_tokens_np = np.asarray(num_tokens)
    if num_tokens_np.shape != correct_np.shape:
        raise ValueError(
            f"num_tokens shape {num_tokens_np.shape} must equal correct shape {correct_np.shape}"
        )
    if not (np.issubdtype(num_tokens_np.dtype, np.integer) or np.issubdtype(num_tokens_np.dtype, np.floating)):
        raise ValueError(f"num_tokens must be real numbers (token counts), got dtype {num_tokens_np.dtype}")
    if not (np.isfinite(num_tokens_np).all() and (num_tokens_np >= 0).all()):
        raise ValueError("num_tokens must be finite and >= 0 (completion lengths in tokens)")
    return correct_np, num_tokens_np


def prompt_budgets(config: Any, examples: list[Any], seed: tuple[int, ...]) -> tuple[list[Any], np.ndarray | None]:
    """L1-Max: each prompt gets a budget in [l1_budget_min, l1_budget_max] written into its text; the budgets
    go to the reward. Any other reward: the examples unchanged, no budgets."""
    if config.reward != "l1_max":
        return examples, None
    return length_rewards.with_budgets(examples, config.l1_budget_min, config.l1_budget_max, seed)
