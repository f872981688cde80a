"""GPU paths: vLLM generation, NCCL weight sync, bf16 DeepSpeed learners. Skipped without CUDA.

Run with `make test-gpu` on a machine with a GPU (`make setup` installs vllm there). docs/gpu.md records
what has been run where. The CPU versions of the same checks are in test_actors.py and test_vllm.py.
"""

import importlib.util

import pytest
import ray
import torch

from ray_effreason.actors.generator import GenerationWorker, SampleRequest, SamplingConfig
from ray_effreason.actors.launch import init_weight_sync, start_actors, sync_weights
from ray_effreason.batching import Sample
from ray_effreason.config import LearnerConfig, LossConfig, RewardConfig, RolloutConfig
from ray_effreason.tasks.synthetic import SyntheticArithmetic

pytestmark = pytest.mark.ray  # starts a Ray cluster

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")


@pytest.fixture(scope="module")
def ray_gpu():
    ray.init(address="local", include_dashboard=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


@pytest.mark.gpu
def test_bf16_learners_and_nccl_weight_sync_to_transformers_generators(ray_gpu, tiny_model):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs (1 learner + 1 generator)")
    task = SyntheticArithmetic(split="train", num_examples=16)
    rollout = RolloutConfig(samples_per_prompt=2, prompts_per_step=2, max_new_tokens=16,
                            generator_backend="transformers")
    learner = LearnerConfig(num_learners=1, zero_stage=2, lr=1e-2, warmup_steps=0, train_batch_size=4,
                            micro_batch_size=2)
    actors = start_actors(name="gpu-sync", task=task, model_path=tiny_model, tokenizer_path=tiny_model, device="cuda",
                          rollout=rollout, reward=RewardConfig(num_verifiers=1), seed=0, learner=learner,
                          loss=LossConfig())
    specs = init_weight_sync(actors, rollout)
    assert all(spec.dtype == "bfloat16" for spec in specs)
    samples = [Sample(prompt_token_ids=[5, 6, 7], token_ids=[8, 9, 10], advantage=float(i % 2 * 2 - 1))
               for i in range(4)]
    actors.learners.train(samples, optimizer_steps=1)
    sync_weights(actors, specs)
    learner_weights = ray.get(actors.learners.workers[0].weights_for_test.remote())
    generator_weights = ray.get(actors.generators.workers[0].weights_for_test.remote())
    for name, tensor in learner_weights.items():
        assert torch.equal(generator_weights[name].float(), tensor), name


@pytest.mark.gpu
@pytest.mark.vllm
@needs_vllm
def test_vllm_backend_generates_with_per_request_seeds(ray_gpu, tiny_model):
    task = SyntheticArithmetic(split="train", num_examples=4)
    # Two engines with different engine seeds on one GPU, each given the same batch on a cold prefix cache.
    # Not a reordered batch, nor the same batch twice on one engine (then prefix-cache hits shorten the
    # prefill): bf16 kernels depend on the batch shape (on CPU, bf16 seeded samples changed when the batch
    # was reversed), so order independence is checked in fp32, in tests/test_vllm.py.
    remote = ray.remote(GenerationWorker).options(num_gpus=0.5)
    workers = []
    for engine_seed in (0, 1):  # one at a time: each engine sizes its KV cache from the free memory
        workers.append(remote.remote(tiny_model, None, "vllm", "cuda", engine_seed, 1, 1, 0.3, 512))
        ray.get(workers[-1].__ray_ready__.remote())
    requests = [SampleRequest(i, 0, i, task.examples[0].prompt, seed=100 + i) for i in range(4)]
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=16, max_prompt_tokens=128)
    first, other = ray.get([worker.generate.remote(requests, sampling) for worker in workers])
    assert [c.token_ids for c in first] == [c.token_ids for c in other]  # the request seeds decide
    assert len({tuple(c.token_ids) for c in first}) > 1, "samples should differ (seeded sampling, not greedy)"
    assert all(c.finish_reason in ("stop", "length") and c.num_tokens == len(c.token_ids) for c in first)
    for worker in workers:
        ray.kill(worker)
