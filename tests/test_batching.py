"""The learner's batching math on the CPU: padding and masks, token-mean across micro-batches and ranks, whitening."""

import random

import pytest
import torch

from ray_effreason.batching import (
    MicroBatch,
    Sample,
    micro_batches,
    step_micro_batches,
    step_token_counts,
    token_mean_scales,
    whitened_advantages,
    whitening_sums,
)
from ray_effreason.losses import policy_loss

PAD = 0


def make_samples(count: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    return [Sample(prompt_token_ids=[rng.randrange(5, 40) for _ in range(rng.randrange(2, 7))],
                   token_ids=[rng.randrange(5, 40) for _ in range(rng.randrange(1, 12))],
                   advantage=rng.gauss(0.0, 1.0)) for _ in range(count)]


def with_token_advantages(batches: list[MicroBatch], seed: int) -> list[MicroBatch]:
    generator = torch.Generator().manual_seed(seed)
    for batch in batches:
        batch.token_advantages = torch.randn(batch.mask.shape, generator=generator)
    return batches


def step_loss(ranks: list[list[Sample]], micro_batch_size: int, scaled: bool) -> torch.Tensor:
    """One optimizer step as DeepSpeed takes it: the mean over ranks and accumulation steps of the (scaled)
    micro-batch token-mean losses. Per-token advantages differ, so a token's weight shows in the result."""
    shards = [micro_batches(samples, micro_batch_size, PAD) for samples in ranks]
    accumulations = {len(batches) for batches in shards}
    assert len(accumulations) == 1
    accumulation = accumulations.pop()
    step_tokens = sum(step_token_counts(batches, accumulation) for batches in shards)  # the all-reduce
    losses = []
    for batches in shards:
        scales = token_mean_scales(batches, accumulation, len(ranks), step_tokens) if scaled else [1.0] * len(batches)
        for batch, scale in zip(batches, scales):
            token_advantages = per_token_advantages(batch)
            logprobs = torch.zeros(batch.mask.shape)
            loss, _ = policy_loss(logprobs, logprobs, token_advantages, batch.mask, aggregation="token-mean")
            losses.append(loss * scale)
    return torch.stack(losses).mean()


def per_token_advantages(batch: MicroBatch) -> torch.Tensor:
    """A value per token that depends only on the token and its position in the completion, not on padding."""
    positions = batch.mask.cumsum(dim=1)
    return batch.input_ids[:, 1:].float() / 10.0 + positions


def global_token_mean(samples: list[Sample]) -> torch.Tensor:
    """-(mean over every completion token of the step of its advantage): the token-mean loss at ratio 1."""
    batch, = micro_batches(samples, len(samples), PAD)
    return -(per_token_advantages(batch) * batch.mask).sum() / batch.mask.sum()


# ---------------------------------------------------------------- padding and masks

def test_micro_batches_pad_right_and_mask_only_completion_tokens():
    samples = make_samples(7)
    batches = micro_batches(samples, size=3, pad_id=PAD)
    assert [batch.input_ids.shape[0] for batch in batches] == [3, 3, 1]  # the last one is smaller
    for batch, chunk in zip(batches, [samples[0:3], samples[3:6], samples[6:]]):
        T = max(len(s.prompt_token_ids) + len(s.token_ids) for s in chunk)
        assert batch.input_ids.shape == batch.attention.shape == (len(chunk), T)
        assert batch.mask.shape == (len(chunk), T - 1)
        for row, sample in enumerate(chunk):
            length = len(sample.prompt_token_ids) + len(sample.token_ids)
            assert batch.input_ids[row, :length].tolist() == sample.prompt_token_ids + sample.token_ids
            assert batch.input_ids[row, length:].eq(PAD).all()
            assert batch.attention[row].tolist() == [1] * length + [0] * (T - length)
            # position t predicts token t + 1: the mask picks exactly the completion's tokens
            predicted = batch.input_ids[row, 1:][batch.mask[row] == 1].tolist()
            assert predicted == sample.token_ids
        assert batch.advantages.tolist() == pytest.approx([sample.advantage for sample in chunk])
        assert batch.old_logprobs is None and batch.ref_logprobs is None and batch.token_advantages is None


def test_pad_id_never_leaks_into_the_mask_even_when_it_is_a_completion_token():
    sample = Sample(prompt_token_ids=[PAD, 5], token_ids=[PAD, PAD], advantage=1.0)
    other = Sample(prompt_token_ids=[5, 6, 7, 8], token_ids=[9, 9, 9], advantage=-1.0)
    batch, = micro_batches([sample, other], size=2, pad_id=PAD)
    assert batch.mask.sum(dim=1).tolist() == [2.0, 3.0]
    assert batch.attention[0].tolist() == [1, 1, 1, 1, 0, 0, 0]


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean"])
def test_length_sorted_steps_keep_each_steps_samples_and_loss_and_pad_less(aggregation):
    samples = make_samples(48, seed=5)  # three optimizer steps of 16, micro-batches of 4
    in_order = [micro_batches(samples[start:start + 16], 4, PAD) for start in range(0, 48, 16)]
    by_length = step_micro_batches(samples, per_step=16, size=4, pad_id=PAD)
    assert len(by_length) == 3 and all(len(step) == 4 for step in by_length)
    for step, (unsorted, batches) in enumerate(zip(in_order, by_length)):
        ids = lambda group: sorted(row.tolist() for batch in group for row in batch.input_ids[:, :2])  # noqa: E731
        assert ids(batches) == ids(unsorted), f"step {step} lost or gained a sample"
        lengths = [int(length) for batch in batches for length in batch.attention.sum(1)]
        assert lengths == sorted(lengths, reverse=True)

        def loss(group: list[MicroBatch]) -> torch.Tensor:  # one optimizer step, DeepSpeed's 1/accumulation
            scales = (token_mean_scales(group, len(group), 1, step_token_counts(group, len(group)))
                      if aggregation == "token-mean" else [1.0] * len(group))
            zeros = [torch.zeros(batch.mask.shape) for batch in group]
            return sum(policy_loss(zero, zero, per_token_advantages(batch), batch.mask, aggregation=aggregation)[0]
                       * scale for batch, zero, scale in zip(group, zeros, scales)) / len(group)

        torch.testing.assert_close(loss(batches), loss(unsorted))
    positions = lambda steps: sum(batch.input_ids.numel() for step in steps for batch in step)  # noqa: E731
    assert positions(by_length) < 0.85 * positions(in_order)
    with pytest.raises(ValueError, match="48 samples are not whole optimizer steps of 20"):
        step_micro_batches(samples, per_step=20, size=4, pad_id=PAD)


def test_micro_batch_to_moves_tensors_and_keeps_unset_fields_none():
    batch, = micro_batches(make_samples(2), size=2, pad_id=PAD)
    batch.old_logprobs = torch.zeros(batch.mask.shape)
    moved = batch.to(torch.device("cpu"))
    assert moved.ref_logprobs is None and moved.token_advantages is None
    assert torch.equal(moved.old_logprobs, batch.old_logprobs) and torch.equal(moved.input_ids, batch.input_ids)


# ---------------------------------------------------------------- token-mean scales

@pytest.mark.parametrize("micro_batch_size", [1, 2, 4])
def test_token_mean_scales_make_one_rank_step_the_global_token_mean(micro_batch_size):
    samples = make_samples(8, seed=1)
    torch.testing.assert_close(step_loss([samples], micro_batch_size, scaled=True), global_token_mean(samples),
                               rtol=1e-6, atol=1e-6)


def test_token_mean_scales_make_a_two_rank_split_the_global_token_mean():
    samples = make_samples(8, seed=2)
    two_ranks = [samples[:4], samples[4:]]
    expected = global_token_mean(samples)
    torch.testing.assert_close(step_loss(two_ranks, 1, scaled=True), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(step_loss(two_ranks, 2, scaled=True), expected, rtol=1e-6, atol=1e-6)
    # ... and without the scales it is a mean of per-sequence means, not the token mean
    assert abs(float(step_loss(two_ranks, 1, scaled=False) - expected)) > 1e-3


def test_token_mean_scales_normalize_each_optimizer_step_on_its_own():
    samples = make_samples(4, seed=3)
    batches = micro_batches(samples, size=1, pad_id=PAD)
    tokens = [len(sample.token_ids) for sample in samples]
    steps = step_token_counts(batches, accumulation=2)
    assert steps.tolist() == [tokens[0] + tokens[1], tokens[2] + tokens[3]] and steps.dtype == torch.float64
    scales = token_mean_scales(batches, 2, 1, steps)
    assert sum(scales[:2]) == pytest.approx(2.0) and sum(scales[2:]) == pytest.approx(2.0)
    assert scales[0] == pytest.approx(2 * tokens[0] / (tokens[0] + tokens[1]))


def test_equal_lengths_need_no_scaling():
    samples = [Sample([1, 2], [3, 4, 5], advantage) for advantage in (1.0, -1.0, 0.5, 2.0)]
    batches = micro_batches(samples, size=1, pad_id=PAD)
    assert token_mean_scales(batches, 2, 2, 2 * step_token_counts(batches, 2)) == pytest.approx([1.0] * 4)


# ---------------------------------------------------------------- whitening

def test_whitening_spans_micro_batches_and_ranks_like_one_batch():
    samples = make_samples(8, seed=4)
    whole = with_token_advantages(micro_batches(samples, 8, PAD), seed=0)[0]
    values = whole.token_advantages[whole.mask == 1].double()
    expected = ((whole.token_advantages - values.mean()) / (values.std(correction=0) + 1e-8)).float() * whole.mask

    ranks = [with_token_advantages(micro_batches(samples[:4], 2, PAD), seed=1),
             with_token_advantages(micro_batches(samples[4:], 2, PAD), seed=2)]
    # the same per-token values as `whole`, laid out in four micro-batches on two ranks
    for start, batch in zip(range(0, 8, 2), [batch for batches in ranks for batch in batches]):
        rows = whole.token_advantages[start:start + 2, : batch.mask.shape[1]]
        batch.token_advantages = rows.clone()
    sums = whitening_sums(ranks[0]) + whitening_sums(ranks[1])  # the all-reduce
    for start, batch in zip(range(0, 8, 2), [batch for batches in ranks for batch in batches]):
        whitened = whitened_advantages(batch, sums)
        torch.testing.assert_close(whitened, expected[start:start + 2, : batch.mask.shape[1]])
        assert whitened[batch.mask == 0].eq(0).all()


def test_whitening_does_not_modify_its_input():
    batch = with_token_advantages(micro_batches(make_samples(3), 3, PAD), seed=5)[0]
    before = batch.token_advantages.clone()
    whitened_advantages(batch, whitening_sums([batch]))
    assert torch.equal(batch.token_advantages, before)
