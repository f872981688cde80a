"""The Ray actor system on CPU: real Ray, real DeepSpeed (gloo), a tiny Qwen2 model built locally."""

import time
from dataclasses import replace

import numpy as np
import pytest
import ray
import torch

from ray_effreason.actors.generator import GenerationWorker, SampleRequest, SamplingConfig
from ray_effreason.actors.generator_group import GeneratorGroup
from ray_effreason.actors.launch import init_weight_sync, start_actors, sync_weights
from ray_effreason.actors.learner import LearnerGroup, LearnerWorker
from ray_effreason.actors.verifier import GradingStream, VerifierPool
from ray_effreason.actors.weight_sync import free_port
from ray_effreason.batching import Sample
from ray_effreason.config import LearnerConfig, LossConfig, RewardConfig, RolloutConfig
from ray_effreason.rewards import length_penalized_rewards
from ray_effreason.seeding import sample_seed
from ray_effreason.tasks.synthetic import SyntheticArithmetic

pytestmark = pytest.mark.ray  # starts a Ray cluster

SAMPLING = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=24, max_prompt_tokens=128)




@pytest.fixture(scope="module")
def task():
    return SyntheticArithmetic(split="train", num_examples=32, seed=3)


@pytest.fixture(scope="module")
def generators(ray_local, tiny_model):
    """Transformers generation workers of engine seeds 0, 1 and 2 (by seed), shared: generating changes nothing
    in a worker but its RNG, which every request reseeds."""
    remote = ray.remote(GenerationWorker).options(num_cpus=0.5)
    # generate() calls of 4 sequences: a worker's share of a batch comes back in several pieces
    workers = {seed: remote.remote(tiny_model, None, "transformers", "cpu", seed, generation_batch_size=4)
               for seed in (0, 1, 2)}
    yield workers
    for worker in workers.values():
        ray.kill(worker)


def make_requests(task, prompts: int, group: int, step: int = 0):
    return [SampleRequest(p * group + g, p, g, task.examples[p].prompt, sample_seed(7, step, p, g))
            for p in range(prompts) for g in range(group)]


def start_learners(model_path: str, ranks: int, learner: LearnerConfig, loss: LossConfig) -> LearnerGroup:
    port = free_port()
    remote = ray.remote(LearnerWorker).options(num_cpus=0.5)
    return LearnerGroup([remote.remote(rank, ranks, "127.0.0.1", port, model_path, learner, loss, 1.0, 24, "cpu", 0)
                         for rank in range(ranks)])


def fake_samples(count: int, seed: int = 0):
    """Hand-made token sequences with non-zero advantages (what the learner receives from the driver)."""
    rng = np.random.default_rng(seed)
    return [Sample(prompt_token_ids=rng.integers(5, 40, size=int(rng.integers(4, 9))).tolist(),
                   token_ids=rng.integers(5, 40, size=int(rng.integers(3, 12))).tolist(),
                   advantage=float(rng.normal())) for _ in range(count)]


def test_two_learner_ranks_take_the_same_optimizer_step_as_one(ray_local, tiny_model):
    learner = LearnerConfig(num_learners=1, zero_stage=2, lr=1e-3, warmup_steps=0, train_batch_size=4,
                            micro_batch_size=1)
    loss = LossConfig(kl_coef=1e-3)
    samples = fake_samples(8)
    one = start_learners(tiny_model, 1, learner, loss)
    two = start_learners(tiny_model, 2, LearnerConfig(**{**learner.__dict__, "num_learners": 2}), loss)
    before = ray.get(one.workers[0].weights_for_test.remote())
    metrics_one = one.train(samples, optimizer_steps=2)
    metrics_two = two.train(samples, optimizer_steps=2)
    after_one = ray.get(one.workers[0].weights_for_test.remote())
    after_two = [ray.get(worker.weights_for_test.remote()) for worker in two.workers]
    assert metrics_one["optimizer_steps"] == 2 and metrics_two["optimizer_steps"] == 2
    moved = max(float((after_one[name] - before[name]).abs().max()) for name in before)
    assert moved > 1e-4, "the update did nothing; the comparison would be vacuous"
    # Adam divides by sqrt(v): where a gradient is ~0, reduction-order rounding can move an element by a
    # few 1e-6. A real sharding error (a micro-batch lost or counted twice) moves weights by ~lr = 1e-3.
    for name in after_one:
        torch.testing.assert_close(after_two[0][name], after_one[name], rtol=1e-3, atol=2e-5)
        torch.testing.assert_close(after_two[1][name], after_two[0][name], rtol=0, atol=0)
    for group in (one, two):
        for worker in group.workers:
            ray.kill(worker)


def test_token_mean_aggregation_is_the_same_for_one_and_two_ranks(ray_local, tiny_model):
    # One rank, one micro-batch of 4: policy_loss itself takes the mean over all the step's tokens.
    # Two ranks, micro-batches of 1: DeepSpeed averages 4 per-sequence means unless the learner scales
    # them by their token counts; the samples differ in length, so without the scaling the steps differ.
    learner = LearnerConfig(num_learners=1, zero_stage=0, lr=1e-3, warmup_steps=0, train_batch_size=4,
                            micro_batch_size=4)
    loss = LossConfig(kl_coef=0.0, aggregation="token-mean")
    samples = fake_samples(4, seed=1)
    assert len({len(sample.token_ids) for sample in samples}) > 1, "equal lengths would make the scaling moot"
    one = start_learners(tiny_model, 1, learner, loss)
    two = start_learners(tiny_model, 2, LearnerConfig(**{**learner.__dict__, "num_learners": 2,
                                                         "micro_batch_size": 1}), loss)
    before = ray.get(one.workers[0].weights_for_test.remote())
    one.train(samples, optimizer_steps=1)
    two.train(samples, optimizer_steps=1)
    after_one = ray.get(one.workers[0].weights_for_test.remote())
    after_two = ray.get(two.workers[0].weights_for_test.remote())
    moved = max(float((after_one[name] - before[name]).abs().max()) for name in before)
    assert moved > 1e-4, "the update did nothing; the comparison would be vacuous"
    # One padded batch of 4 against four unpadded rows: other matmul shapes, other rounding, which Adam's
    # first step (about lr * sign(gradient)) magnifies where a gradient is ~0 (measured: 2e-5 on 1 of 64
    # elements). Per-sequence instead of per-token weights move weights by ~lr = 1e-3.
    for name in after_one:
        torch.testing.assert_close(after_two[name], after_one[name], rtol=1e-3, atol=1e-4)
    for group in (one, two):
        for worker in group.workers:
            ray.kill(worker)


def test_weight_sync_makes_generator_weights_equal_to_the_learner(ray_local, tiny_model, task):
    rollout = RolloutConfig(samples_per_prompt=2, prompts_per_step=2, max_new_tokens=24, num_generators=2,
                            generator_backend="transformers")  # weights_for_test reads transformers weights
    learner = LearnerConfig(num_learners=2, zero_stage=3, lr=1e-2, warmup_steps=0, train_batch_size=4,
                            micro_batch_size=1, num_cpus_per_actor=0.5)
    actors = start_actors(name="sync-test", task=task, model_path=tiny_model, tokenizer_path=tiny_model, device="cpu",
                          rollout=rollout, reward=RewardConfig(num_verifiers=1), seed=0, learner=learner,
                          loss=LossConfig(kl_coef=0.0), learners_later=True)
    # The driver's start-up order: generation workers and verifiers first, the learners later in the bundles
    # held for them, which nothing else may take (a verifier on a learner's bundle left it no room: a hang).
    assert actors.learners is None
    ray.get([worker.__ray_ready__.remote() for worker in actors.generators.workers + actors.verifiers.workers])
    group_id = actors.placement_group.id.hex()
    for bundle in range(learner.num_learners):  # the learners' bundles come first
        assert ray.available_resources().get(f"CPU_group_{bundle}_{group_id}") == learner.num_cpus_per_actor
    assert actors.start_learners() is actors.learners is actors.start_learners()
    specs = init_weight_sync(actors, rollout)
    actors.learners.train(fake_samples(4), optimizer_steps=1)
    # ZeRO-3 gathers parameters collectively: every rank must take part.
    learner_weights = ray.get([worker.weights_for_test.remote() for worker in actors.learners.workers])[0]
    stale = ray.get(actors.generators.workers[0].weights_for_test.remote())
    assert any(not torch.equal(stale[name], learner_weights[name]) for name in learner_weights)
    sync_weights(actors, specs)
    for worker in actors.generators.workers:
        synced = ray.get(worker.weights_for_test.remote())
        assert synced.keys() == learner_weights.keys()
        for name in learner_weights:
            assert torch.equal(synced[name], learner_weights[name]), name
    ray.util.remove_placement_group(actors.placement_group)


def test_group_split_across_two_workers_gets_the_same_rewards_as_one_worker(generators, task):
    one = GeneratorGroup([generators[0]])
    two = GeneratorGroup([generators[1], generators[2]])
    requests = make_requests(task, prompts=3, group=4)  # 12 samples: worker 1 gets 6, so prompt 1 is split
    by_one = one.generate(requests, SAMPLING)
    by_two = two.generate(requests, SAMPLING)
    assert [c.token_ids for c in by_one] == [c.token_ids for c in by_two]
    assert len({tuple(c.token_ids) for c in by_one}) > 1, "samples should differ (seeded sampling, not greedy)"
    # Rewards are computed on the regrouped (B, G) arrays: identical inputs give identical rewards.
    lengths = [np.array([c.num_tokens for c in out]).reshape(3, 4) for out in (by_one, by_two)]
    correct = np.arange(12).reshape(3, 4) % 3 != 0  # a fixed pattern: the point is the grouping, not grading
    np.testing.assert_array_equal(length_penalized_rewards(correct, lengths[0], 0.2),
                                  length_penalized_rewards(correct, lengths[1], 0.2))


def test_completions_stream_back_in_pieces_and_are_graded_while_the_rest_are_sampled(generators, task):
    requests = make_requests(task, 6, 4)  # 24 requests: 12 per worker, in generate() calls of 4
    group = GeneratorGroup([generators[0], generators[1]])
    pool = VerifierPool(task, 2, num_cpus=0.25)
    stream = GradingStream(pool)
    add, arrivals = stream.completions_adder("batch", task.examples), []

    def on_chunk(piece):
        arrivals.append((time.perf_counter(), len(piece)))
        add(piece)

    completions = group.submit(requests, SAMPLING).result(on_chunk=on_chunk)
    graded = stream.result()
    assert [size for _, size in arrivals] == [4] * 6  # each generate() call's completions as soon as it is done
    assert completions == group.generate(requests, SAMPLING)  # the same samples, in request order
    # grading began while the workers were still sampling: before the last piece came back
    assert stream.call_starts[0] < arrivals[-1][0]
    assert 1 < len(stream.call_starts) <= len(arrivals)
    whole = pool.grade([c.text for c in completions], [task.examples[c.prompt_index] for c in completions],
                       [c.finish_reason for c in completions])
    assert [graded["batch", c.request_id] for c in completions] == whole  # the grades of the whole batch at once
    assert any(grade.truncated for grade in whole) and not all(grade.truncated for grade in whole)
    with pytest.raises(ValueError, match="request ids repeat"):
        group.submit(requests + requests[:1], SAMPLING)


def test_a_worker_lost_mid_stream_has_only_its_unreturned_requests_reissued(generators, tiny_model, task):
    remote = ray.remote(GenerationWorker).options(num_cpus=0.5, max_restarts=1)
    worker = remote.remote(tiny_model, None, "transformers", "cpu", 0, generation_batch_size=4)
    group, requests, pieces = GeneratorGroup([worker]), make_requests(task, 6, 4), []  # 24 requests, pieces of 4
    sampling = replace(SAMPLING, max_new_tokens=64)  # five pieces left, each ~64 decoding steps: time to kill

    def on_chunk(piece):
        pieces.append(piece)
        if len(pieces) == 1:  # the first piece is in, the rest is being sampled: kill the process, Ray restarts it
            ray.kill(worker, no_restart=False)

    completions = group.submit(requests, sampling, rejoin=lambda: None).result(on_chunk=on_chunk)
    # the same samples as a worker that was never lost (per-sample seeds), every request once
    assert completions == GeneratorGroup([generators[0]]).generate(requests, sampling)
    assert 1 <= group.reissued_requests <= len(requests) - 4  # never the piece already back
    assert sorted(c.request_id for piece in pieces for c in piece) == [r.request_id for r in requests]
    ray.kill(worker)


def test_generation_reports_truncation_and_eos(generators, task):
    completions = ray.get(generators[0].generate.remote(make_requests(task, 2, 4), SAMPLING))
    for completion in completions:
        assert completion.num_tokens == len(completion.token_ids) <= SAMPLING.max_new_tokens
        if completion.finish_reason == "length":
            assert completion.num_tokens == SAMPLING.max_new_tokens
        else:
            assert completion.finish_reason == "stop"


def test_prompt_over_the_limit_is_an_error_naming_the_limit(generators, task):
    tight = SamplingConfig(1.0, 1.0, 8, max_prompt_tokens=3)
    with pytest.raises(ray.exceptions.RayTaskError, match="max-prompt-tokens 3"):
        ray.get(generators[0].generate.remote(make_requests(task, 1, 2), tight))


def test_lr_warmup_follows_hf_constant_with_warmup(ray_local, tiny_model):
    # PAPER.md §2: HF constant_with_warmup, lr * k / warmup at optimizer step k (0, 1/3, 2/3, 1, 1 here);
    # DeepSpeed's WarmupLR gave 0, 0, 1/3, ... (one step late)
    learner = LearnerConfig(num_learners=1, zero_stage=0, lr=3e-3, warmup_steps=3, train_batch_size=4,
                            micro_batch_size=4)
    group = start_learners(tiny_model, 1, learner, LossConfig(kl_coef=0.0))
    lrs = [group.train(fake_samples(4, seed=step), optimizer_steps=1)["lr"] for step in range(5)]
    assert lrs == pytest.approx([0.0, 1e-3, 2e-3, 3e-3, 3e-3])


def test_transformers_samples_ignore_the_models_generation_config(tiny_model, task, tmp_path):
    # Issue 13, fix 4: a model whose generation_config.json sets a repetition penalty (and an n-gram ban) must
    # sample exactly as the same weights without it, i.e. from softmax(logits / T) alone, what the learner scores.
    import shutil

    from transformers import GenerationConfig

    penalized = tmp_path / "penalized"
    shutil.copytree(tiny_model, penalized)
    GenerationConfig(repetition_penalty=1.5, no_repeat_ngram_size=2).save_pretrained(penalized)
    clean = GenerationWorker(tiny_model, None, "transformers", "cpu", 0)
    inherited = GenerationWorker(str(penalized), None, "transformers", "cpu", 0)
    requests = make_requests(task, prompts=2, group=4)
    samples = [c.token_ids for c in clean.generate(requests, SAMPLING)]
    assert [c.token_ids for c in inherited.generate(requests, SAMPLING)] == samples
    # Not vacuous: with the file's config back on the model, generate() applies the penalty and samples change.
    inherited.backend.model.generation_config = GenerationConfig.from_pretrained(penalized)
    assert [c.token_ids for c in inherited.generate(requests, SAMPLING)] != samples
