"""The transformers generation backend drops finished samples from its batch (TransformersBackend._decode): the
samples must be those of one `model.generate` call over the whole batch, token for token, with their log-probs, and
each must come back in the piece of the window it ended in."""

import pytest
import torch
from transformers import GenerationConfig, LogitsProcessorList

from ray_effreason.actors import transformers_backend
from ray_effreason.actors.generator import tokenize_prompts
from ray_effreason.actors.transformers_backend import SeededGumbelSampler, TransformersBackend
from ray_effreason.config import SamplingConfig
from ray_effreason.tasks.synthetic import SyntheticArithmetic


def one_generate_call(backend: TransformersBackend, prompt_ids, seeds, sampling) -> list[tuple[list[int], str, list]]:
    """The reference: the whole batch in one model.generate call, finished rows kept to the end, cut at EOS."""
    eos, width = backend.tokenizer.eos_token_id, max(len(ids) for ids in prompt_ids)
    input_ids = torch.tensor([[backend.pad_id] * (width - len(ids)) + ids for ids in prompt_ids])
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids])
    sampler = SeededGumbelSampler(seeds, sampling.temperature, sampling.top_p, torch.device("cpu"), logprobs=True)
    config = GenerationConfig(do_sample=False, max_new_tokens=sampling.max_new_tokens, eos_token_id=eos,
                              pad_token_id=backend.pad_id)
    with torch.no_grad():
        output = backend.model.generate(input_ids=input_ids, attention_mask=attention, generation_config=config,
                                        logits_processor=LogitsProcessorList([sampler]))
    samples = []
    for row, logprobs in zip(output[:, width:].tolist(), sampler.rows_logprobs()):
        tokens, reason = (row[: row.index(eos) + 1], "stop") if eos in row else (row, "length")
        samples.append((tokens, reason, logprobs[:len(tokens)]))
    return samples


@pytest.mark.slow  # the level-one model's SFT and two decodes: ~20 s, in make test-local
@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_finished_samples_leave_the_batch_with_the_tokens_one_generate_call_gives(level_one_reasoner, monkeypatch,
                                                                                 top_p):
    model, _ = level_one_reasoner  # samples of varied lengths, most ending with EOS
    monkeypatch.setattr(transformers_backend, "PRUNE_EVERY", 8)  # several windows within 40 tokens
    backend = TransformersBackend(model, model, "cpu", seed=0)
    task = SyntheticArithmetic(split="test", num_examples=12, levels=(1,), seed=1)
    prompt_ids = tokenize_prompts(backend.tokenizer, [example.prompt for example in task.examples] * 2, 64)
    seeds = list(range(1000, 1000 + len(prompt_ids)))
    sampling = SamplingConfig(temperature=1.0, top_p=top_p, max_new_tokens=40, max_prompt_tokens=64, logprobs=True)
    pieces = list(backend.generate_stream(prompt_ids, seeds, sampling, batch_size=len(prompt_ids)))
    by_index = {index: sampled for piece in pieces for index, sampled in piece}
    assert sorted(by_index) == list(range(len(prompt_ids))), "every sample once"
    expected = one_generate_call(backend, prompt_ids, seeds, sampling)
    for index, (tokens, reason, logprobs) in enumerate(expected):
        got_tokens, got_reason, got_logprobs = by_index[index]
        assert (got_tokens, got_reason) == (tokens, reason), f"sample {index}"
        torch.testing.assert_close(torch.tensor(got_logprobs), torch.tensor(logprobs), atol=1e-5, rtol=0)
    # Each piece holds the samples that ended in one window of 8 tokens, in order: pruning happened.
    windows = [{(len(tokens) - 1) // 8 for _, (tokens, _, _) in piece} for piece in pieces]
    assert len(pieces) >= 3 and all(len(window) == 1 for window in windows)
    assert [window.pop() for window in windows] == sorted({(len(s[0]) - 1) // 8 for s in expected})
    assert {reason for _, reason, _ in expected} == {"stop", "length"}, "both endings covered: a weak test otherwise"
