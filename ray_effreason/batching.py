"""The learner's pure batching math: samples -> micro-batches, loss scales, whitening sums.

Two ways to cut an optimizer step's samples into micro-batches:

    micro_batches         --micro-batch-size samples each, right-padded (DeepSpeed counts a fixed number per step)
    packed_micro_batches  --max-tokens-per-micro-batch: consecutive samples up to a token budget (sequence packing,
                          "dynamic batch size"), a varying number per step; padding-free where the model allows:
                          one row, the sequences end to end, position ids restarting at 0 for each, no attention
                          mask (transformers then masks attention block-diagonally, masking_utils
                          `find_packed_sequence_indices`); `unpack_logprobs` returns the row's log-probs to the
                          per-sample (b, T-1) layout, so the loss, masks and advantages are those of the padded path.

Padding-free is not free with sdpa or eager attention: their block-diagonal mask is a dense (L, L) one, and a
row's attention costs L^2 whatever the sequences in it (on the tiny model on CPU, 69% of a 2,986-token row's
forward and backward, against 23% of a (16, 221) padded micro-batch; docs/benchmarks.md "Sequence packing": a
budget of about twice the longest sample was as fast as padding there, larger ones slower). transformers'
flash_attention_2 reads the same position ids as sequence boundaries, with varlen kernels
(modeling_flash_attention_utils; not measured here).

Torch only: no Ray, no DeepSpeed, no torch.distributed. Where a number must span ranks (tokens per
optimizer step, micro-batches per step, whitening sums), a function here computes this rank's part, the
caller all-reduces it (a sum; a max for micro-batch counts) and hands the result to the function that uses it.

Shapes: b samples in a micro-batch, T the longest prompt + completion among them; masks and log-probs
cover the T-1 predicted positions (position t predicts token t+1). A padding-free micro-batch's input is
(1, L), L the sum of its samples' lengths; its per-sample tensors are (b, T-1), as a padded one's.
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
    return [_padded_micro_batch(samples[start:start + size], pad_id) for start in range(0, len(samples), size)]


def _padded_micro_batch(chunk: Sequence[Sample], pad_id: int) -> MicroBatch:
    rows = [list(sample.prompt_token_ids) + list(sample.token_ids) for sample in chunk]
    input_ids = pad_right(rows, pad_id)  # (b, T)
    attention = pad_right([[1] * len(row) for row in rows], 0)  # (b, T)
    mask = _completion_mask(chunk, input_ids.shape[1])  # (b, T-1)
    return MicroBatch(input_ids=input_ids, attention=attention, mask=mask, advantages=_advantages(chunk),
                      sampling_logprobs=_sampling_logprobs(chunk, mask))


def _completion_mask(chunk: Sequence[Sample], width: int) -> torch.Tensor:
    """(b, width-1) float over the predicted positions: 1 where the predicted token is a completion token."""
    mask = torch.zeros(len(chunk), width - 1)  # (b, T-1)
    for index, sample in enumerate(chunk):
        prompt_len = len(sample.prompt_token_ids)
        mask[index, prompt_len - 1: prompt_len - 1 + len(sample.token_ids)] = 1.0
    return mask


def _advantages(chunk: Sequence[Sample]) -> torch.Tensor:
    return torch.tensor([sample.advantage for sample in chunk], dtype=torch.float32)  # (b,)


def _sampling_logprobs(chunk: Sequence[Sample], mask: torch.Tensor) -> torch.Tensor | None:
    """(b, T-1): each sample's Sample.logprobs at its completion positions; None unless every sample has them.

    >>> mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    >>> _sampling_logprobs([Sample([7, 8], [9, 10], 1.0, [-0.5, -1.5]), Sample([7], [9], 0.0, [-2.0])], mask).tolist()
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


# ---------------------------------------------------------------- sequence packing (--max-tokens-per-micro-batch)
#
# Each optimizer step's samples (this rank's train_batch_size / ranks, in the driver's shuffled order) are cut into
# consecutive groups of at most max_tokens tokens. Every rank must run the same number of micro-batches per step
# (ZeRO-2 reduces gradients in every backward, ZeRO-3 gathers parameters in every forward, and the boundary's
# all-reduce must pair up): the learner all-reduces (max) `fewest_micro_batches` and `budget_groups` cuts exactly
# that many, as evenly as the order allows. verl (`rearrange_micro_batches`) and OpenRLHF (`use_dynamic_batch`)
# align the counts the same way but then balance by reordering (Karmarkar-Karp); here the order is kept, groups
# are consecutive: simpler, and nothing in the step's gradient depends on the grouping. A sample longer than the
# budget gets a micro-batch of its own, over the budget (as --micro-batch-size 1 would run it), where verl asserts:
# a budget below max_prompt_tokens + max_new_tokens is then a choice (pack the many short samples, let the rare
# long one run alone), not an error hours into a run.

def fewest_micro_batches(num_tokens: Sequence[int], max_tokens: int, padding_free: bool = True) -> int:
    """The fewest consecutive groups of samples of these lengths within `max_tokens` each (greedy, which is optimal
    for consecutive groups). Padding-free a group costs the sum of its lengths; padded, count * longest. A sample
    over the budget is a group of its own.

    >>> fewest_micro_batches([5, 3, 4, 6, 2], max_tokens=8)  # [5, 3] [4] [6, 2]
    3
    >>> fewest_micro_batches([5, 3, 4, 6, 2], max_tokens=8, padding_free=False)  # [5] [3, 4] [6] [2]
    4
    >>> fewest_micro_batches([3, 12, 2], max_tokens=8)  # [3] [12] [2]: 12 alone, over the budget
    3
    """
    return len(_greedy_groups(num_tokens, max_tokens, padding_free))


def budget_groups(num_tokens: Sequence[int], max_tokens: int, count: int, padding_free: bool = True) -> list[range]:
    """Exactly `count` consecutive groups (index ranges) within `max_tokens` each, the largest as small as it can be.

    `count` is at least `fewest_micro_batches` (another rank may need more) and at most len(num_tokens). The
    smallest capacity whose greedy grouping needs no more than `count` groups is the least possible largest group
    (any grouping of `count` can be split further without growing); greedy with it, closing groups early once the
    samples left are just enough for the groups left, makes exactly `count`.

    >>> [list(group) for group in budget_groups([5, 3, 4, 6, 2], max_tokens=8, count=3)]
    [[0, 1], [2], [3, 4]]
    >>> [list(group) for group in budget_groups([5, 3, 4, 6, 2], max_tokens=8, count=4)]  # none over 7 tokens
    [[0], [1, 2], [3], [4]]
    """
    fewest = fewest_micro_batches(num_tokens, max_tokens, padding_free)
    if not fewest <= count <= len(num_tokens):
        raise ValueError(f"cannot cut {len(num_tokens)} samples into {count} micro-batches of at most {max_tokens} "
                         f"tokens (at least {fewest} needed, at most one per sample)")
    low, high = 1, max_tokens
    while low < high:  # the greedy count only falls as the capacity grows
        middle = (low + high) // 2
        if len(_greedy_groups(num_tokens, middle, padding_free)) <= count:
            high = middle
        else:
            low = middle + 1
    return _greedy_groups(num_tokens, low, padding_free, count=count)


def _greedy_groups(num_tokens: Sequence[int], capacity: int, padding_free: bool,
                   count: int | None = None) -> list[range]:
    """In order, a sample joins the open group while it stays within `capacity`; with `count`, a group also
    closes when the samples left (this one on) would be too few for the groups still to make."""
    if not num_tokens:
        return []
    groups, start, total, longest = [], 0, 0, 0
    for index, length in enumerate(num_tokens):
        total, longest = total + length, max(longest, length)
        cost = total if padding_free else (index - start + 1) * longest
        forced = count is not None and len(num_tokens) - index < count - len(groups)
        if index > start and (cost > capacity or forced):
            groups.append(range(start, index))
            start, total, longest = index, length, length
    groups.append(range(start, len(num_tokens)))
    return groups


def packed_micro_batches(samples: Sequence[Sample], groups: Sequence[range], pad_id: int,
                         padding_free: bool = True) -> list[MicroBatch]:
    """One micro-batch per group of samples: padding-free (one row, position ids per sample) or right-padded.

    >>> batch, = packed_micro_batches([Sample([7, 8], [9], 1.0), Sample([7], [9, 10], -1.0)], [range(2)], pad_id=0)
    >>> batch.input_ids.tolist(), batch.position_ids.tolist(), batch.attention
    ([[7, 8, 9, 7, 9, 10]], [[0, 1, 2, 0, 1, 2]], None)
    >>> batch.mask.tolist(), batch.unpack_index.tolist()  # per sample, as the padded path's
    ([[0.0, 1.0], [1.0, 1.0]], [[0, 1], [3, 4]])
    """
    chunks = [samples[group.start:group.stop] for group in groups]
    if not padding_free:
        return [_padded_micro_batch(chunk, pad_id) for chunk in chunks]
    return [_padding_free_micro_batch(chunk) for chunk in chunks]


def _padding_free_micro_batch(chunk: Sequence[Sample]) -> MicroBatch:
    lengths = [sample.num_tokens for sample in chunk]
    row = [token for sample in chunk for token in [*sample.prompt_token_ids, *sample.token_ids]]
    input_ids = torch.tensor([row], dtype=torch.long)  # (1, L)
    # transformers reads a fall of the position ids as a new sequence and masks attention block-diagonally
    position_ids = torch.cat([torch.arange(length) for length in lengths])[None]  # (1, L)
    width = max(lengths)  # T
    mask = _completion_mask(chunk, width)  # (b, T-1)
    # Sample k's predicted position t (predicting its token t+1) is the row's offset_k + t. Past a sample's end the
    # index runs into the next sample (clamped to the row): values there are masked, as padding is.
    offsets = torch.tensor([0, *lengths[:-1]]).cumsum(0)  # (b,)
    unpack_index = (offsets[:, None] + torch.arange(width - 1)[None]).clamp(max=max(len(row) - 2, 0))  # (b, T-1)
    return MicroBatch(input_ids=input_ids, attention=None, mask=mask, advantages=_advantages(chunk),
                      sampling_logprobs=_sampling_logprobs(chunk, mask), position_ids=position_ids,
                      unpack_index=unpack_index)


def unpack_logprobs(row_logprobs: torch.Tensor, batch: MicroBatch) -> torch.Tensor:
    """A padding-free row's log-probs (1, L-1) in the per-sample layout (b, T-1) of `batch.mask`; differentiable.

    >>> batch, = packed_micro_batches([Sample([7, 8], [9], 1.0), Sample([7], [9, 10], -1.0)], [range(2)], pad_id=0)
    >>> unpack_logprobs(-torch.arange(5.0)[None], batch).tolist()
    [[-0.0, -1.0], [-3.0, -4.0]]
    """
    return row_logprobs[0][batch.unpack_index]  # (b, T-1)


def packed_step_token_counts(steps: Sequence[Sequence[MicroBatch]]) -> torch.Tensor:
    """This rank's completion tokens per optimizer step, (optimizer steps,) float64: all-reduce (sum) it.

    >>> samples = [Sample([1], [2] * n, 1.0) for n in (1, 3, 2)]
    >>> packed_step_token_counts([packed_micro_batches(samples, [range(2), range(2, 3)], 0)]).tolist()
    [6.0]
    """
    return torch.stack([_token_counts(batches).sum() for batches in steps])


def packed_loss_scales(steps: Sequence[Sequence[MicroBatch]], aggregation: str, world_size: int,
                       step_tokens: torch.Tensor) -> list[float]:
    """Loss scales for packed micro-batches (backward with DeepSpeed's scale_wrt_gas=False), one per micro-batch
    of `steps` in order, that give each optimizer step the gradient of the padded path in every aggregation mode.

    The padded step: DeepSpeed averages R ranks x A accumulation steps of micro-batch losses. A per-sequence mode's
    micro-batch loss is a mean over its m sequences, so the step is the mean over the step's S = R * A * m
    sequences; token-mean is made the mean over the step's tokens by `token_mean_scales`. Packed, micro-batch j
    holds n_j sequences and t_j completion tokens, their number per step varies and nothing divides by A;
    DeepSpeed still averages over ranks. Scaled by R * n_j / S = n_j / (this rank's samples in the step), the
    per-sequence losses add up to the same mean over S sequences; by t_j * R / (tokens of the step, all ranks,
    `step_tokens` = packed_step_token_counts all-reduced), token-mean adds up to the same mean over its tokens.

    >>> samples = [Sample([1], [2] * n, 1.0) for n in (1, 3, 2)]
    >>> steps = [packed_micro_batches(samples, [range(2), range(2, 3)], pad_id=0)]  # 2 samples, 4 tokens | 1, 2
    >>> [round(scale, 3) for scale in packed_loss_scales(steps, "seq-mean-token-mean", 1, torch.tensor([6.0]))]
    [0.667, 0.333]
    >>> packed_loss_scales(steps, "token-mean", 2, torch.tensor([12.0]))  # two ranks, 12 tokens in the step
    [0.6666666666666666, 0.3333333333333333]
    """
    mean_over = {"token-mean": "tokens", "seq-mean-token-mean": "sequences", "seq-mean-token-sum-norm": "sequences"}
    if aggregation not in mean_over:  # what a micro-batch's loss is a mean over, per mode (losses.AGGREGATIONS)
        raise ValueError(f"unknown aggregation {aggregation!r}; valid: {list(mean_over)}")
    scales = []
    for batches, tokens in zip(steps, step_tokens.tolist()):
        if mean_over[aggregation] == "tokens":
            scales.extend(float(batch.mask.sum()) * world_size / max(tokens, 1.0) for batch in batches)
        else:
            sequences = sum(batch.mask.shape[0] for batch in batches)
            scales.extend(batch.mask.shape[0] / sequences for batch in batches)
    return scales


# ---------------------------------------------------------------- token-mean across micro-batches and ranks

def step_token_counts(batches: Sequence[MicroBatch], accumulation: int) -> torch.Tensor:
    """This rank's completion tokens per optimizer step, (optimizer steps,) float64: all-reduce (sum) it.

    >>> batches = micro_batches([Sample([1], [2] * n, 1.0) for n in (1, 2, 3, 4)], size=1, pad_id=0)
    >>> step_token_counts(batches, accumulation=2).tolist()
    [3.0, 7.0]
    """
    return _token_counts(batches).view(-1, accumulation).sum(dim=1)


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
    tokens = _token_counts(batches).view(-1, accumulation)  # (optimizer steps, accumulation)
    scales = tokens * accumulation * world_size / step_tokens.clamp_min(1.0)[:, None]
    return scales.flatten().tolist()


def _token_counts(batches: Sequence[MicroBatch]) -> torch.Tensor:
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
