"""The learner's pure batching math: samples -> padded micro-batches, token-mean loss scales, whitening sums.

    micro_batches         --micro-batch-size samples each, right-padded (DeepSpeed counts a fixed number per step)
    step_micro_batches    the RL update's: each optimizer step's samples longest first, then micro_batches
    packed_micro_batches  --max-tokens-per-micro-batch: sequence packing by a token budget, in packing.py, built
                          from this module's Sample, MicroBatch and per-sample tensors (completion_mask, ...)

Torch only: no Ray, no DeepSpeed, no torch.distributed. Where a number must span ranks (tokens per
optimizer step, micro-batches per step, whitening sums), a function here computes this rank's part, the
caller all-reduces it (a sum; a max for micro-batch counts) and hands the result to the function that uses it.

Shapes: b samples in a micro-batch, T the longest prompt + completion among them; masks and log-probs
cover the T-1 predicted positions (position t predicts token t+1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch


@dataclass(frozen=True)
class Sample:
    """One rollout sample as the learner receives it from the driver."""

    prompt_token_ids: list[int]
    token_ids: list[int]  # the completion, EOS included when generation stopped
    advantage: float  # one per sample (RLOO on the (B, G) rewards)
    # The sampling policy's log-prob of each completion token (logits / temperature), when the generators
    # returned them (--async-steps 1: the PPO ratio's old policy is the one that sampled, not the learner's).
    logprobs: list[float] | None = None

    @property
    def num_tokens(self) -> int:
        """Prompt + completion: what a micro-batch's token budget counts."""
        return len(self.prompt_token_ids) + len(self.token_ids)


@dataclass
class MicroBatch:
    """One forward/backward's worth of samples, right-padded or padding-free (`position_ids` set); the learner
    fills old_logprobs, ref_logprobs and token_advantages. Everything but the model's input is per sample."""

    input_ids: torch.Tensor  # (b, T) long, prompt + completion, padded with pad_id; padding-free: (1, L)
    attention: torch.Tensor | None  # (b, T) long, 1 on real tokens; padding-free: None (the position ids delimit)
    mask: torch.Tensor  # (b, T-1) float, 1 where the predicted token is a completion token
    advantages: torch.Tensor  # (b,) float32
    sampling_logprobs: torch.Tensor | None = None  # (b, T-1) Sample.logprobs on the mask, 0 elsewhere; or None
    old_logprobs: torch.Tensor | None = None  # (b, T-1) the policy before the update (PPO ratio)
    ref_logprobs: torch.Tensor | None = None  # (b, T-1) the frozen reference (KL); None without one
    token_advantages: torch.Tensor | None = None  # (b, T-1) what the loss sees (KL-penalized, whitened)
    position_ids: torch.Tensor | None = None  # padding-free only: (1, L) long, 0, 1, ... restarting at each sample
    unpack_index: torch.Tensor | None = None  # padding-free only: (b, T-1) long, where in the row's L-1 predicted
    # positions each sample's predicted position is (`unpack_logprobs`)

    def to(self, device: torch.device) -> MicroBatch:
        moved = {name: value.to(device) for name, value in vars(self).items() if value is not None}
        return replace(self, **moved)


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Rows of token ids as one (len(rows), longest) long tensor, padded on the right.

    >>> pad_right([[1, 2, 3], [4]], 0).tolist()
    [[1, 2, 3], [4, 0, 0]]
    """
    width = max(len(row) for row in rows)
    return torch.tensor([list(row) + [pad_id] * (width - len(row)) for row in rows], dtype=torch.long)


def micro_batches(samples: Sequence[Sample], size: int, pad_id: int) -> list[MicroBatch]:
    """Consecutive chunks of `size` samples (the last may be smaller), on the CPU.

    >>> batch, = micro_batches([Sample([7, 8], [9, 10], 1.0), Sample([7], [9], -1.0)], size=2, pad_id=0)
    >>> batch.input_ids.tolist(), batch.mask.tolist()
    ([[7, 8, 9, 10], [7, 9, 0, 0]], [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    """
    return [padded_micro_batch(samples[start:start + size], pad_id) for start in range(0, len(samples), size)]


def step_micro_batches(samples: Sequence[Sample], per_step: int, size: int, pad_id: int) -> list[list[MicroBatch]]:
    """Each optimizer step's `per_step` consecutive samples, longest first, in padded micro-batches of `size`.

    A step's gradient is the sum of its micro-batches' (equal-sized, so each loss mean weighs the same; token-mean is
    rescaled by token_mean_scales), so which samples share a micro-batch does not change it. Sorted, they share
    lengths and pad less: bench_rl_vs_trl's update (64 rollouts of 10-190 tokens, micro-batches of 8) took 0.89 s
    against 1.14 s in sampling order. Longest first, so a step's peak memory shows at its first micro-batch. The
    samples of a step stay in that step: the order of optimizer steps is the driver's.

    >>> steps = step_micro_batches([Sample([1], [2] * n, 1.0) for n in (1, 4, 2, 3)], per_step=4, size=2, pad_id=0)
    >>> [batch.mask.sum(1).tolist() for batch in steps[0]], [batch.input_ids.shape[1] for batch in steps[0]]
    ([[4.0, 3.0], [2.0, 1.0]], [5, 3])
    """
    if len(samples) % per_step or per_step % size:
        raise ValueError(f"{len(samples)} samples are not whole optimizer steps of {per_step} samples in "
                         f"micro-batches of {size}")
    steps = []
    for start in range(0, len(samples), per_step):
        step = sorted(samples[start:start + per_step], key=lambda sample: -sample.num_tokens)  # stable: ties keep order
        steps.append(micro_batches(step, size, pad_id))
    return steps


def padded_micro_batch(chunk: Sequence[Sample], pad_id: int) -> MicroBatch:
    rows = [list(sample.prompt_token_ids) + list(sample.token_ids) for sample in chunk]
    input_ids = pad_right(rows, pad_id)  # (b, T)
    attention = pad_right([[1] * len(row) for row in rows], 0)  # (b, T)
    mask = completion_mask(chunk, input_ids.shape[1])  # (b, T-1)
    return MicroBatch(input_ids=input_ids, attention=attention, mask=mask, advantages=sample_advantages(chunk),
                      sampling_logprobs=sampling_logprobs(chunk, mask))


def completion_mask(chunk: Sequence[Sample], width: int) -> torch.Tensor:
    """(b, width-1) float over the predicted positions: 1 where the predicted token is a completion token."""
    mask = torch.zeros(len(chunk), width - 1)  # (b, T-1)
    for index, sample in enumerate(chunk):
        prompt_len = len(sample.prompt_token_ids)
        mask[index, prompt_len - 1: prompt_len - 1 + len(sample.token_ids)] = 1.0
    return mask


def sample_advantages(chunk: Sequence[Sample]) -> torch.Tensor:
    return torch.tensor([sample.advantage for sample in chunk], dtype=torch.float32)  # (b,)


def sampling_logprobs(chunk: Sequence[Sample], mask: torch.Tensor) -> torch.Tensor | None:
    """(b, T-1): each sample's Sample.logprobs at its completion positions; None unless every sample has them.

    >>> mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    >>> sampling_logprobs([Sample([7, 8], [9, 10], 1.0, [-0.5, -1.5]), Sample([7], [9], 0.0, [-2.0])], mask).tolist()
    [[0.0, -0.5, -1.5], [-2.0, 0.0, 0.0]]
    """
    if any(sample.logprobs is None for sample in chunk):
        return None
    values = torch.zeros_like(mask)
    for index, sample in enumerate(chunk):
        if len(sample.logprobs) != len(sample.token_ids):
            raise ValueError(f"a sample has {len(sample.logprobs)} log-probs for {len(sample.token_ids)} tokens")
        start = len(sample.prompt_token_ids) - 1
        values[index, start:start + len(sample.token_ids)] = torch.tensor(sample.logprobs, dtype=values.dtype)
    return values


def preference_micro_batches(pairs: Sequence[tuple[Sample, Sample]], size: int, pad_id: int) -> list[MicroBatch]:
    """DPO: chunks of `size` (chosen, rejected) pairs, each one micro-batch of 2 * size rows: the chosen
    samples first, then their rejected ones in the same order (rows i and i + b/2 are a pair).

    >>> batch, = preference_micro_batches([(Sample([7], [8, 9], 0.0), Sample([7], [5], 0.0))], size=1, pad_id=0)
    >>> batch.input_ids.tolist()
    [[7, 8, 9], [7, 5, 0]]
    """
    batches = []
    for start in range(0, len(pairs), size):
        chunk = pairs[start:start + size]
        batches.extend(micro_batches([chosen for chosen, _ in chunk] + [rejected for _, rejected in chunk],
                                     2 * len(chunk), pad_id))
    return batches


def step_token_counts(batches: Sequence[MicroBatch], accumulation: int) -> torch.Tensor:
    """This rank's completion tokens per optimizer step, (optimizer steps,) float64: all-reduce (sum) it.

    >>> batches = micro_batches([Sample([1], [2] * n, 1.0) for n in (1, 2, 3, 4)], size=1, pad_id=0)
    >>> step_token_counts(batches, accumulation=2).tolist()
    [3.0, 7.0]
    """
    return token_counts(batches).view(-1, accumulation).sum(dim=1)


def token_mean_scales(batches: Sequence[MicroBatch], accumulation: int, world_size: int,
                      step_tokens: torch.Tensor) -> list[float]:
    """Loss scales that make "token-mean" a mean over ALL tokens of the optimizer step.

    `step_tokens` is `step_token_counts` summed over the ranks. policy_loss sees one micro-batch;
    DeepSpeed averages micro-batch losses over accumulation steps and ranks. Scaling micro-batch i by
    tokens_i * accumulation * ranks / tokens_of_step turns that average into
    sum(token losses) / tokens_of_step. The other aggregation modes average per sequence and need no scale.

    >>> batches = micro_batches([Sample([1], [2] * n, 1.0) for n in (1, 3)], size=1, pad_id=0)
    >>> token_mean_scales(batches, 2, 1, step_token_counts(batches, 2))
    [0.5, 1.5]
    """
    tokens = token_counts(batches).view(-1, accumulation)  # (optimizer steps, accumulation)
    scales = tokens * accumulation * world_size / step_tokens.clamp_min(1.0)[:, None]
    return scales.flatten().tolist()


def token_counts(batches: Sequence[MicroBatch]) -> torch.Tensor:
    return torch.tensor([float(batch.mask.sum()) for batch in batches], dtype=torch.float64)  # (micro-batches,)


# ---------------------------------------------------------------- whitening across micro-batches and ranks

def whitening_sums(batches: Sequence[MicroBatch]) -> torch.Tensor:
    """(sum of a*m, sum of a*a*m, sum of m) over this rank's token advantages a and masks m, float64 (3,).

    All-reduce (sum) it, then `whitened_advantages`. Token-weighted, as OpenRLHF's (PAPER.md §1.4).
    """
    sums = torch.zeros(3, dtype=torch.float64, device=batches[0].mask.device)
    for batch in batches:
        values, mask = batch.token_advantages.double(), batch.mask.double()
        sums += torch.stack([(values * mask).sum(), (values * values * mask).sum(), mask.sum()])
    return sums


def whitened_advantages(batch: MicroBatch, sums: torch.Tensor) -> torch.Tensor:
    """The batch's token advantages minus the global mean, over the global std; 0 off the mask. (b, T-1)

    >>> batch, = micro_batches([Sample([1], [2, 3], 1.0), Sample([1], [2], 3.0)], size=2, pad_id=0)
    >>> batch.token_advantages = batch.advantages[:, None].expand_as(batch.mask).clone()
    >>> whitened_advantages(batch, whitening_sums([batch])).double().round(decimals=4).tolist()
    [[-0.7071, -0.7071], [1.4142, 0.0]]
    """
    mean = sums[0] / sums[2]
    std = (sums[1] / sums[2] - mean * mean).clamp_min(0).sqrt()
    return ((batch.token_advantages - mean) / (std + 1e-8)).float() * batch.mask
