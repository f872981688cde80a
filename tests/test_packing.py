"""Sequence packing (--max-tokens-per-micro-batch) on the CPU: the token-budget grouping, padding-free log-probs on a
real tiny Qwen2 against the padded batch's, one optimizer step's gradient packed vs padded in every aggregation mode,
and the LearnerWorker (DeepSpeed on gloo, in this process, no Ray) packed vs padded."""

import os
import random

import pytest
import torch

from ray_effreason.actors.learner import micro_batch_logprobs
from ray_effreason.batching import (
    MicroBatch,
    Sample,
    micro_batches,
    step_token_counts,
    token_mean_scales,
)
from ray_effreason.losses import AGGREGATIONS, policy_loss
from ray_effreason.packing import (
    budget_groups,
    fewest_micro_batches,
    packed_loss_scales,
    packed_micro_batches,
    packed_step_token_counts,
)

PAD = 0
VOCAB = 96


def tiny_qwen2(attention: str = "sdpa"):
    """A tiny Qwen2ForCausalLM in float32 (random weights; packing is about shapes and masks, not what it learned)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, pad_token_id=PAD, attn_implementation=attention)
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).float()


def spread_samples(count: int, seed: int = 0, logprobs: bool = False) -> list[Sample]:
    """Prompts of 4-20 tokens, completions of 3-60 (a realistic spread), non-zero advantages."""
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        completion = [rng.randrange(1, VOCAB) for _ in range(rng.randrange(3, 61))]
        samples.append(Sample(prompt_token_ids=[rng.randrange(1, VOCAB) for _ in range(rng.randrange(4, 21))],
                              token_ids=completion, advantage=rng.gauss(0.0, 1.0),
                              logprobs=[-rng.random() for _ in completion] if logprobs else None))
    return samples


# ---------------------------------------------------------------- grouping by the token budget

def brute_force_largest(num_tokens: list[int], count: int) -> int:
    """The least possible largest group of `count` consecutive groups (padding-free), by trying every cut."""
    if count == 1:
        return sum(num_tokens)
    return min(max(sum(num_tokens[:cut]), brute_force_largest(num_tokens[cut:], count - 1))
               for cut in range(1, len(num_tokens) - count + 2))


@pytest.mark.parametrize("padding_free", [True, False])
def test_budget_groups_cut_exactly_count_consecutive_groups_within_the_budget(padding_free):
    rng = random.Random(0)
    for _ in range(200):
        num_tokens = [rng.randrange(1, 40) for _ in range(rng.randrange(1, 9))]
        max_tokens = rng.randrange(10, 80)
        fewest = fewest_micro_batches(num_tokens, max_tokens, padding_free)
        for count in range(fewest, len(num_tokens) + 1):
            groups = budget_groups(num_tokens, max_tokens, count, padding_free)
            assert len(groups) == count
            assert [index for group in groups for index in group] == list(range(len(num_tokens)))  # in order
            for group in groups:
                lengths = num_tokens[group.start:group.stop]
                cost = sum(lengths) if padding_free else len(lengths) * max(lengths)
                assert cost <= max_tokens or len(lengths) == 1  # over the budget only a sample alone
            if padding_free and max(num_tokens) <= max_tokens:  # as even as the order allows
                largest = max(sum(num_tokens[group.start:group.stop]) for group in groups)
                assert largest == brute_force_largest(num_tokens, count)


def test_a_sample_over_the_budget_gets_a_micro_batch_of_its_own():
    assert [list(group) for group in budget_groups([4, 3, 30, 2, 5], max_tokens=10, count=3)] == [[0, 1], [2], [3, 4]]


def test_budget_groups_reject_a_count_the_budget_cannot_meet():
    with pytest.raises(ValueError, match="at least 3 needed"):
        budget_groups([5, 3, 4, 6, 2], max_tokens=8, count=2)
    with pytest.raises(ValueError, match="at most one per sample"):
        budget_groups([5, 3], max_tokens=8, count=3)


def test_packed_micro_batches_carry_masks_advantages_and_sampling_logprobs_as_the_padded_path():
    samples = spread_samples(6, logprobs=True)
    packed, = packed_micro_batches(samples, [range(6)], PAD)
    padded, = micro_batches(samples, size=6, pad_id=PAD)
    assert packed.input_ids.shape == (1, sum(sample.num_tokens for sample in samples))
    for name in ("mask", "advantages", "sampling_logprobs"):
        assert torch.equal(getattr(packed, name), getattr(padded, name)), name
    # the row's tokens at each sample's predicted positions are the padded rows' targets
    targets = packed.input_ids[0, 1:][packed.unpack_index]  # (b, T-1)
    assert torch.equal(targets * padded.mask.long(), padded.input_ids[:, 1:] * padded.mask.long())


# ---------------------------------------------------------------- padding-free log-probs (transformers' packed masks)

@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_padding_free_logprobs_equal_the_padded_batchs(attention):
    # transformers 5 builds a block-diagonal causal mask from position ids that restart (masking_utils
    # find_packed_sequence_indices), for sdpa and eager attention, when there is no attention mask and no cache.
    model = tiny_qwen2(attention).eval()
    samples = spread_samples(8)
    padded, = micro_batches(samples, size=8, pad_id=PAD)
    packed, = packed_micro_batches(samples, [range(8)], PAD)
    with torch.no_grad():
        expected = micro_batch_logprobs(model, padded, temperature=0.7)  # (b, T-1)
        actual = micro_batch_logprobs(model, packed, temperature=0.7)  # (b, T-1)
    real = padded.attention[:, 1:].bool()  # every predicted position of a real token, prompt included
    torch.testing.assert_close(actual[real], expected[real], rtol=0, atol=1e-5)
    # without position ids the row would be one long sequence: the test can tell
    with torch.no_grad():
        leaky = micro_batch_logprobs(model, MicroBatch(packed.input_ids, None, packed.mask, packed.advantages,
                                                       position_ids=torch.arange(packed.input_ids.shape[1])[None],
                                                       unpack_index=packed.unpack_index), temperature=0.7)
    assert (leaky[real] - expected[real]).abs().max() > 1e-2


# ---------------------------------------------------------------- one optimizer step's gradient, packed vs padded

def token_values(batch: MicroBatch, first_sample: int, scale: float) -> torch.Tensor:
    """(b, T-1): a value per completion token that depends on the sample and the token's place in the completion
    only, not on the layout; 0 elsewhere."""
    values = torch.zeros_like(batch.mask)
    for row in range(batch.mask.shape[0]):
        positions = batch.mask[row].nonzero().squeeze(-1)
        sample = first_sample + row
        values[row, positions] = scale * torch.sin(sample * 1.7 + 0.3 * torch.arange(len(positions)))
    return values


def micro_batch_loss(model, batch: MicroBatch, first_sample: int, aggregation: str) -> torch.Tensor:
    logprobs = micro_batch_logprobs(model, batch, temperature=1.0)  # (b, T-1)
    # an old policy away from the current one (ratios off 1, some clipped) and advantages that vary per token
    old_logprobs = logprobs.detach() + token_values(batch, first_sample, 0.3)
    advantages = batch.advantages[:, None] + token_values(batch, first_sample + 5, 1.0)
    loss, _ = policy_loss(logprobs, old_logprobs, advantages, batch.mask, aggregation=aggregation, norm_tokens=64)
    return loss


def padded_step_gradient(model, ranks: list[list[Sample]], micro_batch_size: int, aggregation: str):
    """As DeepSpeed takes it: the mean over ranks and accumulation steps of the (token-mean-scaled) losses."""
    model.zero_grad()
    shards = [micro_batches(samples, micro_batch_size, PAD) for samples in ranks]
    accumulation = len(shards[0])
    step_tokens = sum(step_token_counts(batches, accumulation) for batches in shards)  # the all-reduce
    total = 0.0
    for rank, batches in enumerate(shards):
        scales = (token_mean_scales(batches, accumulation, len(ranks), step_tokens) if aggregation == "token-mean"
                  else [1.0] * len(batches))
        for index, (batch, scale) in enumerate(zip(batches, scales)):
            first_sample = rank * 1000 + index * micro_batch_size
            total = total + micro_batch_loss(model, batch, first_sample, aggregation) * scale
    (total / (accumulation * len(ranks))).backward()
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}


def packed_step_gradient(model, ranks: list[list[Sample]], max_tokens: int, aggregation: str):
    """Packed: as many micro-batches on each rank (the all-reduced max), no 1/accumulation, packed_loss_scales;
    DeepSpeed's mean over ranks stays."""
    model.zero_grad()
    lengths = [[sample.num_tokens for sample in samples] for samples in ranks]
    count = max(fewest_micro_batches(rank_lengths, max_tokens) for rank_lengths in lengths)  # the all-reduce (max)
    groups = [budget_groups(rank_lengths, max_tokens, count) for rank_lengths in lengths]
    shards = [packed_micro_batches(samples, rank_groups, PAD) for samples, rank_groups in zip(ranks, groups)]
    step_tokens = sum(packed_step_token_counts([batches]) for batches in shards)  # the all-reduce (sum)
    total = 0.0
    for rank, (batches, rank_groups) in enumerate(zip(shards, groups)):
        scales = packed_loss_scales([batches], aggregation, len(ranks), step_tokens)
        for batch, group, scale in zip(batches, rank_groups, scales):
            total = total + micro_batch_loss(model, batch, rank * 1000 + group.start, aggregation) * scale
    (total / len(ranks)).backward()
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}, groups


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("aggregation", list(AGGREGATIONS))
def test_packed_step_gradient_equals_the_padded_step_gradient(aggregation, ranks):
    model = tiny_qwen2()
    samples = spread_samples(24, seed=ranks)
    shards = [samples[rank * len(samples) // ranks:(rank + 1) * len(samples) // ranks] for rank in range(ranks)]
    expected = padded_step_gradient(model, shards, micro_batch_size=4, aggregation=aggregation)
    actual, groups = packed_step_gradient(model, shards, max_tokens=160, aggregation=aggregation)
    sizes = [len(group) for rank_groups in groups for group in rank_groups]
    assert len(sizes) > 2 * ranks and len(set(sizes)) > 2, f"micro-batches of {sizes} samples test too little"
    assert max(grad.abs().max() for grad in expected.values()) > 1e-3, "a zero gradient would make this vacuous"
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_unscaled_packed_micro_batches_would_not_give_the_padded_step():
    # The scales matter: the mean of the packed micro-batch losses weighs samples by their micro-batch's size.
    model = tiny_qwen2()
    samples = spread_samples(24)
    expected = padded_step_gradient(model, [samples], 4, "seq-mean-token-mean")
    model.zero_grad()
    groups = budget_groups([sample.num_tokens for sample in samples], 160, fewest_micro_batches(
        [sample.num_tokens for sample in samples], 160))
    batches = packed_micro_batches(samples, groups, PAD)
    torch.stack([micro_batch_loss(model, batch, group.start, "seq-mean-token-mean")
                 for batch, group in zip(batches, groups)]).mean().backward()
    difference = max(float((parameter.grad - expected[name]).abs().max())
                     for name, parameter in model.named_parameters())
    assert difference > 1e-4


# ---------------------------------------------------------------- the LearnerWorker: DeepSpeed (gloo) in this process

@pytest.fixture(scope="module")
def learner_process_group(tmp_path_factory):
    """A saved tiny Qwen2 and this process as a one-rank torch.distributed group (what LearnerWorker joins), undone
    afterwards: the environment LearnerWorker writes, the thread count it sets, the process group. No Ray: the
    LearnerWorker class is a plain one."""
    import torch.distributed as dist

    from ray_effreason.actors.weight_sync import free_port

    path = tmp_path_factory.mktemp("packing-model")
    tiny_qwen2().save_pretrained(path)
    saved_env = {name: os.environ.get(name) for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE",
                                                          "LOCAL_RANK", "LOCAL_WORLD_SIZE", "DS_ACCELERATOR")}
    os.environ["DS_ACCELERATOR"] = "cpu"  # DeepSpeed on the CPU also where CUDA is (as actors/launch.py's CPU actors)
    threads = torch.get_num_threads()
    yield str(path), free_port()
    if dist.is_initialized():
        dist.destroy_process_group()
    torch.set_num_threads(threads)
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def make_learner(learner_process_group, aggregation: str, zero_stage: int = 0, **learner_fields):
    from ray_effreason.actors.learner import LearnerWorker
    from ray_effreason.config import LearnerConfig, LossConfig

    path, port = learner_process_group
    learner = LearnerConfig(zero_stage=zero_stage, lr=1e-3, warmup_steps=0, train_batch_size=8, **learner_fields)
    return LearnerWorker(0, 1, "127.0.0.1", port, path, learner, LossConfig(kl_coef=0.0, aggregation=aggregation),
                         1.0, 64, "cpu", 0)


def record_step_gradients(worker) -> list[dict[str, torch.Tensor]]:
    """The gradients DeepSpeed hands the optimizer at each optimizer step (ZeRO-0: the parameters' .grad), one dict
    per optimizer step taken."""
    recorded, take_model_step = [], worker.engine._take_model_step

    def recording(*args, **kwargs):
        recorded.append({name: parameter.grad.clone() for name, parameter in worker.engine.module.named_parameters()
                         if parameter.grad is not None})  # ZeRO-2: none, its gradients are in its partitions
        return take_model_step(*args, **kwargs)

    worker.engine._take_model_step = recording
    return recorded


@pytest.mark.slow  # a DeepSpeed engine per case: in make test-local, out of the sub-minute make test-fast
@pytest.mark.parametrize(("aggregation", "zero_stage"),
                         [("token-mean", 0), ("seq-mean-token-mean", 0), ("seq-mean-token-mean", 2)])
def test_learner_packed_update_equals_the_padded_update(learner_process_group, aggregation, zero_stage):
    samples = spread_samples(16, seed=3)  # two optimizer steps of 8
    padded = make_learner(learner_process_group, aggregation, zero_stage=zero_stage, micro_batch_size=2)
    packed = make_learner(learner_process_group, aggregation, zero_stage=zero_stage, max_tokens_per_micro_batch=150)
    gradients_padded, gradients_packed = record_step_gradients(padded), record_step_gradients(packed)
    before = padded.weights_for_test()
    metrics_padded, metrics = padded.train(samples), packed.train(samples)
    assert metrics["padding_free"] == 1.0 and metrics["optimizer_steps"] == 2.0
    assert metrics["micro_batches"] not in (8.0, 16.0), "as many micro-batches as padded: a weak test"
    assert len(gradients_packed) == len(gradients_padded) == 2
    if zero_stage == 0:  # the gradients themselves (ZeRO-2 keeps them in its partitions, not in .grad)
        for step_packed, step_padded in zip(gradients_packed, gradients_padded):
            for name in step_padded:  # the second step starts from weights a first step's rounding apart
                torch.testing.assert_close(step_packed[name], step_padded[name], rtol=1e-3, atol=1e-6, msg=name)
    else:  # the mean over steps of the gradient norm before clipping (the ZeRO optimizer's)
        assert metrics["grad_norm"] == pytest.approx(metrics_padded["grad_norm"], rel=1e-5)
    after_padded, after_packed = padded.weights_for_test(), packed.weights_for_test()
    moved = max(float((after_padded[name] - before[name]).abs().max()) for name in before)
    assert moved > 1e-4, "the update did nothing; the comparison would be vacuous"
    # Adam's first steps are about lr * sign(gradient): where a gradient is ~0, rounding (other shapes) can move an
    # element by ~lr. A wrong scale or a lost micro-batch moves most of them.
    for name in before:
        torch.testing.assert_close(after_packed[name], after_padded[name], rtol=1e-3, atol=1e-4, msg=name)


def test_learner_rejects_packing_for_sft_and_dpo(learner_process_group):
    packed = make_learner(learner_process_group, "token-mean", max_tokens_per_micro_batch=150)
    with pytest.raises(ValueError, match="max_tokens_per_micro_batch .* RL update only"):
        packed.train_objective("sft", spread_samples(8))


@pytest.mark.slow
def test_learner_packs_right_padded_when_the_model_mixes_a_rows_sequences(learner_process_group, monkeypatch):
    # A model that ignores the position ids' sequence boundaries (here: transformers made to see none) fails the
    # learner's probe; the micro-batches are then cut by padded size and right-padded, with the same update.
    import transformers.masking_utils

    samples = spread_samples(16, seed=4)
    padded = make_learner(learner_process_group, "seq-mean-token-mean", micro_batch_size=2)
    packed = make_learner(learner_process_group, "seq-mean-token-mean", max_tokens_per_micro_batch=300)
    monkeypatch.setattr(transformers.masking_utils, "find_packed_sequence_indices", lambda _: None)
    with pytest.warns(UserWarning, match="right-padded"):
        metrics = packed.train(samples)
    padded.train(samples)
    assert metrics["padding_free"] == 0.0 and metrics["micro_batches"] not in (8.0, 16.0)
    after_padded, after_packed = padded.weights_for_test(), packed.weights_for_test()
    for name in after_padded:
        torch.testing.assert_close(after_packed[name], after_padded[name], rtol=1e-3, atol=1e-4, msg=name)


def test_max_tokens_per_micro_batch_is_a_flag_none_by_default_and_positive():
    from ray_effreason.cli import config_parser, parse_config
    from ray_effreason.config import LearnerConfig, TrainConfig

    parser = config_parser(TrainConfig)
    assert parse_config(parser, TrainConfig, [])[0].learner.max_tokens_per_micro_batch is None
    config, _ = parse_config(parser, TrainConfig, ["--max-tokens-per-micro-batch", "4096"])
    assert config.learner.max_tokens_per_micro_batch == 4096
    with pytest.raises(ValueError, match="max_tokens_per_micro_batch must be > 0"):
        LearnerConfig(max_tokens_per_micro_batch=0)
