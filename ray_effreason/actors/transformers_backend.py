"""The transformers generation backend of GenerationWorker (generator.py): `model.generate` on the policy's own
weights, for CPUs and models too small for vLLM to pay off.

- Sampling: the Gumbel-max trick with one torch.Generator per sample (`SeededGumbelSampler`), seeded by the driver,
  so a sample's tokens do not depend on which worker or batch it lands in.
- Decoding: `PRUNE_EVERY` tokens per `model.generate` call, finished samples yielded and dropped from the batch
  between calls (`TransformersBackend._decode`): the same tokens as one call, 1.5x faster on the tiny reasoner's
  rollouts (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from ray_effreason.config import SamplingConfig
from ray_effreason.devices import DEVICES

if TYPE_CHECKING:
    from ray_effreason.actors.generator import Sampled


class SeededGumbelSampler:
    """A logits processor that turns greedy decoding into seeded sampling, one generator per row.

    argmax(logits / T + Gumbel noise) is an exact sample from softmax(logits / T); drawing the noise from
    a per-sample generator makes each row's draws independent of batch composition.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: torch.device,
                 logprobs: bool = False):
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.temperature, self.top_p = temperature, top_p
        # With `logprobs`: per step, (B,) log-probs of the token each row samples, under the distribution it is
        # sampled from (softmax of logits / T after top-p; vLLM's "processed_logprobs").
        self.step_logprobs: list[torch.Tensor] | None = [] if logprobs else None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:  # noqa: ARG002 (HF's signature)
        logits = scores.float() / self.temperature  # (B, V)
        if self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            remove = cumulative - sorted_logits.softmax(-1) > self.top_p  # keep the first token past top_p
            logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
        vocab = logits.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g, device=logits.device) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-10)))
        noisy = logits + gumbel  # (B, V): greedy decoding takes its argmax
        if self.step_logprobs is not None:
            chosen = noisy.argmax(dim=-1, keepdim=True)  # (B, 1)
            self.step_logprobs.append(logits.log_softmax(dim=-1).gather(-1, chosen).squeeze(-1).cpu())
        return noisy

    def rows_logprobs(self) -> list[list[float]]:
        """Per row, the log-probs of its sampled tokens, one per generation step since the last call (cut at EOS
        by the caller)."""
        assert self.step_logprobs is not None
        rows = torch.stack(self.step_logprobs, dim=1).tolist()  # (B, steps)
        self.step_logprobs = []
        return rows

    def keep_rows(self, positions: list[int]) -> None:
        """Drop the other rows (finished samples): the batch continues with these, in this order."""
        self.generators = [self.generators[position] for position in positions]


# Decode steps per model.generate call of TransformersBackend._decode, between drops of finished samples. Measured on
# the tiny reasoner (64 samples, up to 256 tokens, 1 thread): 16 and 32 both 1.5x faster than one call, 64 1.3x.
PRUNE_EVERY = 32


class TransformersBackend:
    def __init__(self, model_path: str, tokenizer_path: str, device: str, seed: int):
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        torch.manual_seed(seed)
        self.device = torch.device(device)
        dtype = getattr(torch, DEVICES[device].dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(self.device).eval()
        # Samples must come from softmax(logits / T), the distribution the learner scores (issue 13, fix 4):
        # generate() fills every field its config leaves unset from the model's generation_config.json (a
        # repetition_penalty, no_repeat_ngram_size, min_length, suppress_tokens, ... each a logits processor that
        # would make rollouts off-policy). A fresh GenerationConfig leaves only HF's neutral global defaults.
        self.model.generation_config = GenerationConfig()
        self.pad_id = (self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                       else self.tokenizer.eos_token_id)

    def generate_stream(self, prompt_ids: list[list[int]], seeds: list[int], sampling: SamplingConfig,
                        batch_size: int) -> Iterator[list[tuple[int, Sampled]]]:
        """Batches of `batch_size` prompts, each decoded by `_decode`: finished samples yielded as they finish."""
        for start in range(0, len(prompt_ids), batch_size):
            yield from self._decode(prompt_ids[start:start + batch_size], seeds[start:start + batch_size], sampling,
                                    first_index=start)

    def _decode(self, prompt_ids: list[list[int]], seeds: list[int], sampling: SamplingConfig,
                first_index: int) -> Iterator[list[tuple[int, Sampled]]]:
        """One batch, decoded `PRUNE_EVERY` tokens per `model.generate` call; between calls the samples that ended
        are yielded and dropped from the batch: their rows leave the inputs, the KV cache
        (`Cache.batch_select_indices`) and the sampler. `model.generate` alone keeps a finished row in the batch until
        the longest sample ends (RL batches mix 10- and 200-token samples); vLLM drops it at once. Each call continues
        from the cache, so a sample's tokens are the single call's: its Gumbel noise comes from its own generator
        (measured on the tiny reasoner: 64 of 64 samples token for token, and 1.5x faster at 64 x 256 tokens)."""
        from transformers import GenerationConfig, LogitsProcessorList

        eos, cap = self.tokenizer.eos_token_id, sampling.max_new_tokens
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.tensor([[self.pad_id] * (width - len(ids)) + ids for ids in prompt_ids],
                                 device=self.device)  # (b, T): left-padded, then growing
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids],
                                 device=self.device)  # (b, T)
        sampler = SeededGumbelSampler(seeds, sampling.temperature, sampling.top_p, self.device, sampling.logprobs)
        rows = list(range(len(prompt_ids)))  # the batch's live rows, as indices into prompt_ids
        tokens: list[list[int]] = [[] for _ in prompt_ids]
        logprobs: list[list[float]] = [[] for _ in prompt_ids]
        cache, decoded = None, 0
        while rows:
            config = GenerationConfig(do_sample=False, max_new_tokens=min(PRUNE_EVERY, cap - decoded),
                                      eos_token_id=eos, pad_token_id=self.pad_id, return_dict_in_generate=True)
            with torch.no_grad():
                output = self.model.generate(input_ids=input_ids, attention_mask=attention, past_key_values=cache,
                                             generation_config=config, logits_processor=LogitsProcessorList([sampler]))
            new = output.sequences[:, input_ids.shape[1]:]  # (live, <= PRUNE_EVERY)
            decoded += new.shape[1]
            new_logprobs = sampler.rows_logprobs() if sampling.logprobs else None
            piece, kept = [], []
            for position, (row, ids) in enumerate(zip(rows, new.tolist())):
                ended = eos in ids
                ids = ids[: ids.index(eos) + 1] if ended else ids
                tokens[row] += ids
                if new_logprobs is not None:
                    logprobs[row] += new_logprobs[position][:len(ids)]
                if ended or decoded >= cap:
                    piece.append((first_index + row, (tokens[row], "stop" if ended else "length",
                                                      logprobs[row] if new_logprobs is not None else None)))
                else:
                    kept.append(position)
            if piece:
                yield piece
            if not kept:
                return
            keep = torch.tensor(kept, device=self.device)
            input_ids = output.sequences[keep]
            attention = torch.cat([attention[keep], attention.new_ones(len(kept), new.shape[1])], dim=1)
            cache = output.past_key_values
            cache.batch_select_indices(keep)
            sampler.keep_rows(kept)
            rows = [rows[position] for position in kept]

    def load_weights(self, named_tensors) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in named_tensors:
                params[name].copy_(tensor)

    def load_checkpoint(self, model_path: str) -> None:
        from ray_effreason.actors.generator import checkpoint_weights  # generator.py imports this module

        weights = dict(checkpoint_weights(model_path))
        missing = sorted(set(dict(self.model.named_parameters())) - set(weights))
        if missing:
            raise ValueError(f"{model_path}: not the architecture this worker runs, no weights for {missing[:3]}")
        self.load_weights(weights.items())

    def named_parameters(self):
        return self.model.named_parameters()
