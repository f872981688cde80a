"""Other length rewards, for the comparison of issue 12: pure numpy functions on (B, G) arrays.

Each follows one paper (or its public code), cited in its docstring, and says how it treats a wrong and a
truncated sample and what its known pitfalls are. All take `correct` (bool, B prompts x G samples; a
truncated sample is never correct: the caller grades it so, as for the paper's reward) and `num_tokens`
(completion tokens, never characters: open-r1 measures characters in its length rewards, tokens elsewhere).

    kimi_length_rewards       Kimi k1.5 (2501.12599 §2.3.3): correctness + w * (0.5 - min-max position in group)
    dapo_overlong_rewards     DAPO (2503.14476 Eq. 13): +-1 correctness + soft overlong punishment in a buffer
    cosine_length_rewards     Yeo et al. 2025 (2502.03373 Eq. 1): cosine in length, its ends set by correctness
    dler_truncation_rewards   DLER (2510.15110): 1 only for a correct answer within the truncation length
    l1_max_rewards            L1-Max / LCPO-Max (2503.04697 Eq. 3): correct * clip(a (budget - n) + delta, 0, 1)
    pass_rate_rewards         the paper's reward with alpha scaled by the group's pass rate (prime-rl, PipelineRL)

The paper's own reward is `rewards.length_penalized_rewards`; `rewards.REWARDS` names them all.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np


def kimi_length_rewards(correct: np.ndarray, num_tokens: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """Kimi k1.5's length reward added to correctness (Kimi Team 2025, arXiv 2501.12599, §2.3.3).

        lambda = 0.5 - (n - min_n) / (max_n - min_n)     over ALL G samples of the prompt (its row)
        r = 1[correct] + weight * (lambda if correct else min(0, lambda))

    A wrong sample is never rewarded for being short (min(0, lambda)), only punished for being long; a
    truncated one is wrong and, at the budget, usually the longest: -weight/2. Equal lengths: lambda = 0
    (open-r1's choice; Kimi's formula divides by zero), plain correctness.

    Pitfall (open-r1#360): used ALONE, as open-r1's `len_reward` can be, a long correct answer (-0.5) scores
    below a short wrong one (0). Added to correctness, correct beats wrong iff weight < 2, so weight >= 2 is
    refused. Departures: min/max per prompt, as Kimi (open-r1's takes them over whatever batch it is handed);
    no warm-up of the length reward (Kimi starts it later in training); weight is ours (Kimi gives none).

    >>> kimi_length_rewards(np.array([[True, True, False]]), np.array([[100, 200, 300]]))
    array([[ 1.5,  1. , -0.5]])
    """
    correct, lengths = _checked(correct, num_tokens)
    if not 0.0 <= weight < 2.0:
        raise ValueError(f"kimi weight must be in [0, 2), got {weight}: with weight >= 2 a long correct answer "
                         "scores at or below a short wrong one (open-r1#360)")
    low, high = lengths.min(axis=1, keepdims=True), lengths.max(axis=1, keepdims=True)  # (B, 1)
    spread = np.where(high > low, high - low, 1.0)  # (B, 1), 1 where all lengths are equal (no division by 0)
    position = np.where(high > low, 0.5 - (lengths - low) / spread, 0.0)  # (B, G) lambda; equal lengths: 0
    return correct + weight * np.where(correct, position, np.minimum(0.0, position))


def dapo_overlong_rewards(correct: np.ndarray, num_tokens: np.ndarray, max_tokens: int,
                          buffer_tokens: int) -> np.ndarray:
    """DAPO's soft overlong punishment added to its +-1 correctness (Yu et al. 2025, arXiv 2503.14476, Eq. 13).

        r = (+1 if correct else -1) + penalty,   penalty = 0                          n <= L_max - L_cache
                                                           ((L_max - L_cache) - n) / L_cache   in the buffer
                                                           -1                         n > L_max

    Wrong samples get -1 and the same length penalty; a truncated sample (n = L_max = the generation budget)
    is wrong and fully punished: -2. The correctness scale is DAPO's (+-1, not 0/1): with RLOO the gap between
    right and wrong is then 2 against the penalty's 1, as in DAPO. Pitfall: below L_max - L_cache there is no
    length pressure at all; it is a guard against truncation, a length *cap*, not a preference for short.
    verl's implementation has the same ramp (`overlong_buffer`, penalty_factor 1).

    >>> dapo_overlong_rewards(np.array([[True, True, True, False]]), np.array([[50, 80, 100, 100]]), 100, 40)
    array([[ 1. ,  0.5,  0. , -2. ]])
    """
    correct, lengths = _checked(correct, num_tokens)
    if not 0 < buffer_tokens <= max_tokens:
        raise ValueError(f"overlong buffer must be in (0, max_tokens={max_tokens}], got {buffer_tokens}")
    expected = max_tokens - buffer_tokens
    penalty = np.clip((expected - lengths) / buffer_tokens, -1.0, 0.0)  # (B, G)
    return np.where(correct, 1.0, -1.0) + penalty


def cosine_length_rewards(correct: np.ndarray, num_tokens: np.ndarray, max_tokens: int, truncation_tokens: int, *,
                          correct_short: float = 2.0, correct_long: float = 1.0, wrong_short: float = -10.0,
                          wrong_long: float = 0.0, exceed: float = -10.0) -> np.ndarray:
    """The cosine length reward (Yeo et al. 2025, "Demystifying Long Chain-of-Thought", arXiv 2502.03373, Eq. 1).

        r = r_T + (r_0 - r_T) * (1 + cos(pi * min(n, T) / T)) / 2,   (r_0, r_T) = (correct_short, correct_long)
                                                                     or (wrong_short, wrong_long) when wrong
        r = exceed                                                   when n >= truncation_tokens (truncated)

    A correct answer earns more the shorter it is; a WRONG one earns more the LONGER it is (think longer when
    unsure): on hard prompts this pushes length up, by design. Truncated samples get `exceed`. Defaults are the
    paper's (r0c=2, rLc=1, r0w=-10, rLw=0, re=-10). Pitfalls: with T below the generation budget, cos runs past
    pi and turns back up: knoveleng/open-rs#4 (there T = 1000 characters for 4096 tokens); here n is clipped
    at T, a departure. open-r1's version measures characters and has no exceed penalty.

    >>> cosine_length_rewards(np.array([[True, True, False, False]]), np.array([[0, 50, 50, 100]]), 100, 100)
    array([[  2. ,   1.5,  -5. , -10. ]])
    """
    correct, lengths = _checked(correct, num_tokens)
    if not (0 < max_tokens and 0 < truncation_tokens):
        raise ValueError(f"cosine max_tokens and truncation_tokens must be > 0, got {max_tokens}, {truncation_tokens}")
    shape = (1.0 + np.cos(np.pi * np.minimum(lengths, max_tokens) / max_tokens)) / 2.0  # (B, G) 1 at 0, 0 at T
    short, long = np.where(correct, correct_short, wrong_short), np.where(correct, correct_long, wrong_long)
    return np.where(lengths >= truncation_tokens, exceed, long + (short - long) * shape)


def dler_truncation_rewards(correct: np.ndarray, num_tokens: np.ndarray, max_tokens: int) -> np.ndarray:
    """DLER's truncation penalty (Liu et al. 2025, "DLER: Doing Length pEnalty Right", arXiv 2510.15110).

        r = 1[correct and n <= L]

    The plainest length penalty: an answer longer than the truncation length L scores as a wrong one (0).
    DLER truncates generation at L; here generation runs to --max-new-tokens and the reward applies L, the
    same reward (set --max-new-tokens L to also save the compute). DLER's other parts (batch-wise reward
    normalization, dynamic sampling, clip-higher) are training choices, not this reward: not included.
    Pitfall: no preference among answers under L, and a hard prompt whose correct answers all exceed L gives
    no signal at all (a row of zeros) -- the reason DLER pairs it with dynamic sampling.

    >>> dler_truncation_rewards(np.array([[True, True, False]]), np.array([[90, 110, 50]]), 100)
    array([[1., 0., 0.]])
    """
    correct, lengths = _checked(correct, num_tokens)
    if not max_tokens > 0:
        raise ValueError(f"dler truncation length must be > 0, got {max_tokens}")
    return (correct & (lengths <= max_tokens)).astype(np.float64)


def l1_max_rewards(correct: np.ndarray, num_tokens: np.ndarray, budgets: np.ndarray, alpha: float = 0.0003,
                   delta: float = 0.5) -> np.ndarray:
    """L1-Max, LCPO-Max (Aggarwal & Welleck 2025, "L1: Controlling How Long A Reasoning Model Thinks", Eq. 3).

        r = 1[correct] * clip(alpha * (budget - n) + delta, 0, 1)       budget: per prompt, WRITTEN IN THE PROMPT

    `budgets` is (B,) or (B, 1): the budget each prompt's text states (`with_budgets`, "Think for maximum N
    tokens.", L1's wording). Wrong and truncated samples get 0. Defaults are L1's (alpha 3e-4, delta 0.5,
    budgets drawn uniformly from [100, 4000] tokens). Pitfalls: alpha is per token, so it must match the
    budget scale (at 256 tokens, 3e-4 moves the reward by < 0.08: no signal); a correct answer more than
    delta/alpha over budget scores 0, the same as a wrong one; one more than (1 - delta)/alpha under it scores 1,
    no pressure to be shorter still.

    >>> l1_max_rewards(np.array([[True, True, True, False]]), np.array([[0, 100, 3000, 10]]), np.array([100]),
    ...                alpha=0.001)
    array([[0.6, 0.5, 0. , 0. ]])
    """
    correct, lengths = _checked(correct, num_tokens)
    budgets = np.asarray(budgets, dtype=np.float64).reshape(-1, 1)  # (B, 1)
    if budgets.shape[0] != correct.shape[0] or not (budgets > 0).all():
        raise ValueError(f"l1_max needs one budget > 0 per prompt: {correct.shape[0]} prompts, got {budgets.ravel()}")
    if not (alpha > 0 and 0.0 <= delta <= 1.0):
        raise ValueError(f"l1 alpha must be > 0 and delta in [0, 1], got {alpha}, {delta}")
    return np.where(correct, np.clip(alpha * (budgets - lengths) + delta, 0.0, 1.0), 0.0)


def pass_rate_rewards(correct: np.ndarray, num_tokens: np.ndarray, alpha: float) -> np.ndarray:
    """The paper's reward with alpha scaled by the group's pass rate p = (correct samples) / G:

        r = 1[correct] * (1 - alpha * p * sigmoid(z))        z as in rewards.length_penalized_rewards

    Easy prompts (p -> 1) get the paper's full penalty, hard ones (few correct) almost none: reasoning is
    kept where it is needed and cut where the model already succeeds. Difficulty scaling as prime-rl
    (PrimeIntellect-ai/prime-rl#2702: penalty coef * pass_rate * tokens / seq_len) and PipelineRL (#126:
    "scale overlong penalty by group solve rate, zero on failures") do, and DDCA; departure: the penalty
    stays the paper's sigmoid of the per-prompt z-score (theirs is linear in tokens). Wrong and truncated
    samples get 0, no correct sample gives zeros; one correct: 1 - alpha / (2G).

    >>> np.round(pass_rate_rewards(np.array([[True, False, False, False]]), np.array([[9, 1, 1, 1]]), 0.4), 3)
    array([[0.95, 0.  , 0.  , 0.  ]])
    """
    from ray_effreason.rewards import correct_length_sigmoid

    correct, lengths = _checked(correct, num_tokens)
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    pass_rate = correct.mean(axis=1, keepdims=True)  # (B, 1)
    return np.where(correct, 1.0 - alpha * pass_rate * correct_length_sigmoid(correct, lengths), 0.0)


# ---------------------------------------------------------------- the budget written in the prompt (L1)

def with_budgets(examples: Sequence[Any], low: int, high: int, seed: Sequence[int]) -> tuple[list[Any], np.ndarray]:
    """Each example with a budget drawn uniformly from [low, high] and written into its prompt in L1's wording
    (budget_prompts.WORDINGS["l1"]); (examples, (B,))."""
    from ray_effreason.budget_prompts import state_budget

    budgets = np.random.default_rng(list(seed)).integers(low, high + 1, len(examples))  # (B,)
    return ([dataclasses.replace(example, prompt=state_budget(example.prompt, budget, "l1"))
             for example, budget in zip(examples, budgets)], budgets)


def _checked(correct: np.ndarray, num_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from ray_effreason.rewards import _validated

    correct, lengths = _validated(correct, num_tokens)
    return correct, lengths.astype(np.float64)
