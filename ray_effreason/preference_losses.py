"""The baselines' losses (issue 12): SFT on completion tokens and DPO against a frozen reference. Pure torch.

Shapes as losses.py: N sequences of T predicted positions; `logprobs` (N, T) are the per-token log-probs of
the tokens that were written (losses.token_logprobs), `mask` (N, T) marks the completion tokens (padding
may hold anything, even inf/NaN: it is masked out before any arithmetic).

    sft_loss        rejection-sampling SFT on the shortest correct completion: the mean NLL per completion
                    token over the batch (token-mean: every kept token counts the same, a short and a long
                    completion are not averaged per sequence first)
    dpo_loss        Rafailov et al. 2023, Eq. 7, on sequence log-prob SUMS:
                    -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), mean over pairs

DPO for length (the paper's baseline, PAPER.md §5): chosen = the shortest correct sample, rejected = the
longest correct one (a wrong one when only one is correct). With sums, a longer sequence has a more negative
log-prob: that length dependence is DPO's own (no length normalization, as Rafailov et al.).
"""

from __future__ import annotations

import torch


def sequence_logprobs(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) sums of the completion tokens' log-probs.

    >>> sequence_logprobs(torch.tensor([[-1.0, -2.0, float("nan")]]), torch.tensor([[1, 1, 0]])).tolist()
    [-3.0]
    """
    valid = mask.bool()
    return torch.where(valid, logprobs, torch.zeros_like(logprobs)).sum(dim=1)


def sft_loss(logprobs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean negative log-likelihood per completion token -> (loss, metrics {"nll", "tokens"}).

    >>> loss, metrics = sft_loss(torch.tensor([[-1.0, -3.0], [-2.0, float("-inf")]]), torch.tensor([[1, 1], [1, 0]]))
    >>> loss.item(), metrics["tokens"]
    (2.0, 3.0)
    """
    valid = mask.bool()
    tokens = valid.sum()
    loss = -sequence_logprobs(logprobs, valid).sum() / tokens.clamp_min(1)
    return loss, {"nll": float(loss.detach()), "tokens": float(tokens)}


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO on (P,) sequence log-prob sums -> (loss, metrics).

    Only the policy sums carry gradients (the reference is frozen). Metrics: reward_accuracy (pairs whose
    implicit reward beta * (pi - ref) ranks chosen above rejected), reward_margin (its mean), loss.

    >>> zero = torch.zeros(2)
    >>> loss, metrics = dpo_loss(zero, zero, zero, zero, beta=0.1)
    >>> round(loss.item(), 4), metrics["reward_margin"]
    (0.6931, 0.0)
    """
    if not beta > 0:
        raise ValueError(f"dpo beta must be > 0, got {beta}")
    chosen_reward = beta * (policy_chosen - reference_chosen.detach())  # (P,)
    rejected_reward = beta * (policy_rejected - reference_rejected.detach())  # (P,)
    margin = chosen_reward - rejected_reward
    loss = -torch.nn.functional.logsigmoid(margin).mean()
    return loss, {"loss": float(loss.detach()), "reward_accuracy": float((margin > 0).float().mean()),
                  "reward_margin": float(margin.detach().mean())}
