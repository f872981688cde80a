"""The RL loss: token-level PPO-clip with named aggregation modes, optional KL to a reference policy.

Shapes: N sequences (completions) of T tokens, padded; `mask` (N, T) marks the valid completion
tokens (bool, or float where nonzero = valid). Everything here is pure torch: no Ray, no I/O.

The paper (PAPER §2) trains with OpenRLHF's PolicyLoss: PPO-clip (eps 0.2) on RLOO advantages,
"seq-mean-token-mean" aggregation, and the KL to the reference as a k1 penalty *in the reward*
(coefficient 1e-3, gamma 1): that is `kl_penalized_advantages` followed by `policy_loss` with
kl_coef = 0. A k3 KL *loss* term (GRPO-style) is the alternative offered by `policy_loss` itself.
"""

import torch


def policy_loss(
    logprobs,
    old_logprobs,
    advantages,
    mask,
    *,
    clip_low=0.2,
    clip_high=None,
    aggregation="seq-mean-token-mean",
    ref_logprobs=None,
    kl_coef=0.0,
    kl_estimator="k3",
    norm_tokens=None,
):
    """Token-level PPO-clip loss -> (loss, metrics).

    Args:
        logprobs: (N, T) log pi(token) under the policy being trained; the only input that gets gradients.
        old_logprobs: (N, T) log pi_old(token) at rollout time (detached).
        advantages: (N,) per sequence or (N, T) per token (detached).
        mask: (N, T) valid completion tokens; padding may hold any value, even inf/NaN.
        clip_low: ratio lower clip 1 - clip_low.
        clip_high: ratio upper clip 1 + clip_high; None means symmetric (= clip_low). Larger values
            are DAPO's "clip-higher".
        aggregation: "seq-mean-token-mean" (the paper's), "token-mean", "seq-mean-token-sum-norm".
        ref_logprobs: (N, T) reference-policy log-probs (detached), needed when kl_coef > 0.
        kl_coef: weight of the per-token KL term added to the loss (0: none).
        kl_estimator: "k1", "k2", "k3" (Schulman's estimators of KL(pi || pi_ref)) or None.
        norm_tokens: the constant divisor of "seq-mean-token-sum-norm" (e.g. max_new_tokens); the
            other modes ignore it, so a learner may always pass max_new_tokens.

    Returns:
        loss: scalar tensor. metrics: python floats -- clip_fraction (valid tokens where the clipped
        term is the active one), approx_kl (k3 of pi_old vs pi), kl_to_ref (k3, when ref_logprobs
        given), ratio_mean, ratio_max (over valid tokens), loss.

    >>> lp = torch.zeros(1, 3)
    >>> loss, metrics = policy_loss(lp, lp, torch.tensor([2.0]), torch.tensor([[1, 1, 0]]))
    >>> loss.item(), metrics["clip_fraction"], metrics["ratio_max"]
    (-2.0, 0.0, 1.0)
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; valid: {list(AGGREGATIONS)}")
    if kl_estimator is not None and kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown kl_estimator {kl_estimator!r}; valid: {list(KL_ESTIMATORS)} or None")
    clip_high = clip_low if clip_high is None else clip_high
    if not 0.0 < clip_low < 1.0:
        raise ValueError(f"clip_low must be in (0, 1), got {clip_low}")
    if not clip_high > 0.0:
        raise ValueError(f"clip_high must be > 0 (or None for symmetric), got {clip_high}")
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    if kl_coef > 0 and (ref_logprobs is None or kl_estimator is None):
        raise ValueError("kl_coef > 0 needs ref_logprobs and a kl_estimator ('k1', 'k2' or 'k3')")
    _check_norm_tokens(aggregation, norm_tokens)
    _check_shapes(logprobs, old_logprobs=old_logprobs, mask=mask, ref_logprobs=ref_logprobs)
    if tuple(advantages.shape) not in ((logprobs.shape[0],), tuple(logprobs.shape)):
        raise ValueError(
            f"advantages must be (N,) or (N, T) = {tuple(logprobs.shape)}, got {tuple(advantages.shape)}"
        )

    dtype = torch.promote_types(logprobs.dtype, torch.float32)  # never do ratios in bf16
    valid = mask != 0  # (N, T)
    logprobs = logprobs.to(dtype)
    old_logprobs = old_logprobs.detach().to(dtype)
    advantages = advantages.detach().to(dtype)
    if advantages.ndim == 1:
        advantages = advantages[:, None]  # (N, 1): one advantage for every token of the sequence
    # where() before exp(): padding values (even -inf) then cannot turn into NaN losses or gradients.
    log_ratio = torch.where(valid, logprobs - old_logprobs, 0.0)  # (N, T)
    ratio = log_ratio.exp()
    advantages = torch.where(valid, advantages, 0.0)  # (N, T)

    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * advantages
    token_losses = -torch.minimum(unclipped, clipped)  # (N, T), 0 on padding
    if kl_coef > 0:
        log_ref_ratio = torch.where(valid, ref_logprobs.detach().to(dtype) - logprobs, 0.0)
        token_losses = token_losses + kl_coef * KL_ESTIMATORS[kl_estimator](log_ref_ratio)
    token_losses = torch.where(valid, token_losses, 0.0)
    loss = AGGREGATIONS[aggregation](token_losses, valid, norm_tokens)

    with torch.no_grad():
        count = int(valid.sum())
        nan = torch.tensor(float("nan"), dtype=dtype, device=ratio.device)

        def valid_mean(values):
            return torch.where(valid, values, 0.0).sum() / count if count > 0 else nan

        metrics = {
            "clip_fraction": valid_mean((clipped < unclipped).to(dtype)),
            "approx_kl": valid_mean(_kl_k3(log_ratio)),  # (r - 1) - log r, r = pi / pi_old
            "ratio_mean": valid_mean(ratio),
            "ratio_max": ratio[valid].max() if count > 0 else nan,
            "loss": loss,
        }
        if ref_logprobs is not None:
            log_ref_ratio = torch.where(valid, ref_logprobs.to(dtype) - logprobs, 0.0)
            metrics["kl_to_ref"] = valid_mean(_kl_k3(log_ref_ratio))
        values = torch.stack([value.detach().to(dtype) for value in metrics.values()]).tolist()  # one sync
        metrics = dict(zip(metrics, values))
    return loss, metrics


def kl_penalized_advantages(advantages, logprobs, ref_logprobs, mask, kl_coef):
    """Per-token advantages with the paper's in-reward KL penalty: (N,) -> (N, T), detached.

    OpenRLHF (the paper's code, PAPER §1.4) adds -kl_coef * (logp_t - ref_logp_t) (k1) to each token's
    reward and the sequence reward at the end; returns with gamma = 1 then give

        A_t = A - kl_coef * sum_{t' >= t, valid} (logp_t' - ref_logp_t')

    Pass the rollout-time (old) log-probs as `logprobs`; the result is a constant for `policy_loss`
    (called then with kl_coef = 0). Padding positions get 0.

    >>> kl_penalized_advantages(torch.tensor([1.0]), torch.tensor([[0.5, 0.5, 9.0]]),
    ...                         torch.zeros(1, 3), torch.tensor([[1, 1, 0]]), kl_coef=0.1)
    tensor([[0.9000, 0.9500, 0.0000]])
    """
    _check_shapes(logprobs, ref_logprobs=ref_logprobs, mask=mask)
    if tuple(advantages.shape) != (logprobs.shape[0],):
        raise ValueError(f"advantages must be (N,) = ({logprobs.shape[0]},), got {tuple(advantages.shape)}")
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    with torch.no_grad():
        dtype = torch.promote_types(logprobs.dtype, torch.float32)
        valid = mask != 0
        kl = torch.where(valid, logprobs.to(dtype) - ref_logprobs.to(dtype), 0.0)  # (N, T), k1
        future_kl = kl.flip(-1).cumsum(-1).flip(-1)  # (N, T): sum over t' >= t
        per_token = advantages.to(dtype)[:, None] - kl_coef * future_kl
        return torch.where(valid, per_token, 0.0)


def token_logprobs(logits, targets, temperature=1.0):
    """log softmax(logits / temperature)[target] per position: (N, T, V), (N, T) -> (N, T), in float32 (or float64).

    One sequence at a time, so a bf16 batch never has two (N, T, V) float32 copies alive: without
    gradients only one (T, V) row exists at a time; with gradients log_softmax keeps its float32 output
    for backward, one (N, T, V) float32 copy in all (the same approach as OpenRLHF's
    log_probs_from_logits).

    >>> token_logprobs(torch.zeros(1, 2, 4), torch.tensor([[0, 3]]))
    tensor([[-1.3863, -1.3863]])
    """
    if logits.ndim != 3 or tuple(targets.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"need logits (N, T, V) and targets (N, T); got {tuple(logits.shape)}, {tuple(targets.shape)}"
        )
    dtype = torch.promote_types(logits.dtype, torch.float32)
    rows = []
    for row_logits, row_targets in zip(logits, targets):
        row_logits = row_logits.to(dtype)
        if temperature != 1.0:  # the distribution the rollouts were sampled from
            row_logits = row_logits / temperature
        row_logprobs = torch.log_softmax(row_logits, dim=-1)  # (T, V)
        rows.append(row_logprobs.gather(-1, row_targets[:, None].long()).squeeze(-1))  # (T,)
    return torch.stack(rows)  # (N, T)


# ---------------------------------------------------------------------------------------------------
# aggregation: token losses (N, T), zero on padding -> scalar


def _seq_mean_token_mean(token_losses, valid, norm_tokens):  # noqa: ARG001  (AGGREGATIONS share a signature)
    # The paper's (OpenRLHF PolicyLoss): masked mean over each sequence's tokens, then mean over
    # sequences. A sequence without valid tokens contributes 0 but still counts in the batch mean.
    per_sequence = token_losses.sum(-1) / valid.sum(-1).clamp(min=1)  # (N,)
    return per_sequence.mean()


def _token_mean(token_losses, valid, norm_tokens):  # noqa: ARG001
    # Every valid token of *this call's* batch weighs the same. Fed one micro-batch at a time with
    # gradient accumulation, the weighting holds within micro-batches only (with one sequence per
    # micro-batch this is seq-mean-token-mean again).
    return token_losses.sum() / valid.sum().clamp(min=1)


def _seq_mean_token_sum_norm(token_losses, valid, norm_tokens):  # noqa: ARG001
    # Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): divide each sequence's token
    # sum by a constant, not by its own length. With the per-sequence mean, each token of a sequence of
    # |o| tokens gets weight 1/|o|: a short correct answer is pushed up harder per token than a long
    # one, and a long wrong answer is pushed down more gently than a short one. That favours shorter
    # correct and longer wrong answers even at alpha = 0, a length pressure the paper's alpha does not
    # control. A constant divisor removes it.
    return (token_losses.sum(-1) / norm_tokens).mean()


# ---------------------------------------------------------------------------------------------------
# KL estimators of KL(pi || pi_ref) from log r = log pi_ref - log pi on samples of pi (Schulman 2020)


def _kl_k1(log_ratio):
    return -log_ratio


def _kl_k2(log_ratio):
    return 0.5 * log_ratio**2


def _kl_k3(log_ratio):
    return log_ratio.exp() - log_ratio - 1.0  # >= 0, unbiased, low variance


# The choices, by name (config validation and --help read these).
AGGREGATIONS = {
    "seq-mean-token-mean": _seq_mean_token_mean,
    "token-mean": _token_mean,
    "seq-mean-token-sum-norm": _seq_mean_token_sum_norm,
}
KL_ESTIMATORS = {"k1": _kl_k1, "k2": _kl_k2, "k3": _kl_k3}


# ---------------------------------------------------------------------------------------------------
# validation


def _check_shapes(logprobs, **others):
    if logprobs.ndim != 2:
        raise ValueError(f"logprobs must be (N, T), got shape {tuple(logprobs.shape)}")
    for name, tensor in others.items():
        if tensor is not None and tuple(tensor.shape) != tuple(logprobs.shape):
            raise ValueError(
                f"{name} shape {tuple(tensor.shape)} must equal logprobs shape {tuple(logprobs.shape)}"
            )


def _check_norm_tokens(aggregation, norm_tokens):
    if aggregation == "seq-mean-token-sum-norm" and norm_tokens is None:
        raise ValueError("aggregation 'seq-mean-token-sum-norm' needs norm_tokens (e.g. max_new_tokens)")
    if norm_tokens is not None and not norm_tokens > 0:
        raise ValueError(f"norm_tokens must be > 0, got {norm_tokens}")
