"""Sequence packing (--max-tokens-per-micro-batch): an optimizer step's samples cut by a token budget.

    packed_micro_batches  consecutive samples up to a token budget ("dynamic batch size"), a varying number per
                          step; padding-free where the model allows: one row, the sequences end to end, position
                          ids restarting at 0 for each, no attention mask (transformers then masks attention
                          block-diagonally, masking_utils `find_packed_sequence_indices`); `unpack_logprobs`
                          returns the row's log-probs to the per-sample (b, T-1) layout, so the loss, masks and
                          advantages are those of the padded path (batching.py).
    packed_loss_scales    the scales that give each optimizer step the padded path's gradient in every
                          aggregation mode.

Padding-free is not free with sdpa or eager attention: their block-diagonal mask is a dense (L, L) one, and a
row's attention costs L^2 whatever the sequences in it (on the tiny model on CPU, 69% of a 2,986-token row's
forward and backward, against 23% of a (16, 221) padded micro-batch; docs/benchmarks.md "Sequence packing": a
budget of about twice the longest sample was as fast as padding there, larger ones slower). transformers'
flash_attention_2 reads the same position ids as sequence boundaries, with varlen kernels
(modeling_flash_attention_utils; not measured here).

Torch only, as batching.py. A padding-free micro-batch's input is (1, L), L the sum of its samples' lengths; its
per-sample tensors are (b, T-1), as a padded one's.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ray_effreason.batching import (
    MicroBatch,
    Sample,
    completion_mask,
    padded_micro_batch,
    sample_advantages,
    sampling_logprobs,
    token_counts,
)

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
        return [padded_micro_batch(chunk, pad_id) for chunk in chunks]
    return [_padding_free_micro_batch(chunk) for chunk in chunks]


def _padding_free_micro_batch(chunk: Sequence[Sample]) -> MicroBatch:
    lengths = [sample.num_tokens for sample in chunk]
    row = [token for sample in chunk for token in [*sample.prompt_token_ids, *sample.token_ids]]
    input_ids = torch.tensor([row], dtype=torch.long)  # (1, L)
    # transformers reads a fall of the position ids as a new sequence and masks attention block-diagonally
    position_ids = torch.cat([torch.arange(length) for length in lengths])[None]  # (1, L)
    width = max(lengths)  # T
    mask = completion_mask(chunk, width)  # (b, T-1)
    # Sample k's predicted position t (predicting its token t+1) is the row's offset_k + t. Past a sample's end the
    # index runs into the next sample (clamped to the row): values there are masked, as padding is.
    offsets = torch.tensor([0, *lengths[:-1]]).cumsum(0)  # (b,)
    unpack_index = (offsets[:, None] + torch.arange(width - 1)[None]).clamp(max=max(len(row) - 2, 0))  # (b, T-1)
    return MicroBatch(input_ids=input_ids, attention=None, mask=mask, advantages=sample_advantages(chunk),
                      sampling_logprobs=sampling_logprobs(chunk, mask), position_ids=position_ids,
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
    return torch.stack([token_counts(batches).sum() for batches in steps])


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
