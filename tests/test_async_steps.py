"""One-step-off pipelining (--async-steps 1, driver.py) and the sampling log-probs it trains on.

The generators' log-probs must be those of the distribution each token was drawn from (the PPO ratio's old
policy in async mode); asking for them must not change the samples; an async run must pipeline (the next
step's samples one update stale) and its first step must equal the sequential run's.
"""

import json

import pytest
import torch

from ray_effreason.actors.transformers_backend import TransformersBackend
from ray_effreason.config import SamplingConfig
from ray_effreason.driver import train


def generate_all(backend, prompt_ids, seeds, sampling, batch_size):
    """A backend's whole stream (generate_stream: (index, sample) pieces), in the order of `prompt_ids`."""
    pieces = [item for piece in backend.generate_stream(prompt_ids, seeds, sampling, batch_size) for item in piece]
    return [sampled for _, sampled in sorted(pieces, key=lambda item: item[0])]


@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_transformers_logprobs_are_the_sampling_distributions_and_leave_samples_alone(tiny_model, top_p):
    backend = TransformersBackend(tiny_model, tiny_model, "cpu", seed=0)
    prompts = [backend.tokenizer("Compute (3 + 8) mod 10.")["input_ids"], backend.tokenizer("1 + 1")["input_ids"]]
    sampling = SamplingConfig(temperature=0.7, top_p=top_p, max_new_tokens=12, max_prompt_tokens=64)
    with_logprobs = generate_all(backend, prompts, [5, 6], SamplingConfig(**{**vars(sampling), "logprobs": True}), 8)
    plain = generate_all(backend, prompts, [5, 6], sampling, 8)
    assert [tokens for tokens, _, _ in with_logprobs] == [tokens for tokens, _, _ in plain]
    assert all(logprobs is None for _, _, logprobs in plain)
    for ids, (tokens, _, logprobs) in zip(prompts, with_logprobs):
        assert len(logprobs) == len(tokens) > 0
        with torch.no_grad():
            logits = backend.model(torch.tensor([ids + tokens])).logits[0, len(ids) - 1:-1].float() / 0.7
        if top_p < 1.0:  # the nucleus the token was drawn from, renormalized (vLLM's "processed_logprobs")
            ordered, order = torch.sort(logits, descending=True, dim=-1)
            cut = ordered.softmax(-1).cumsum(-1) - ordered.softmax(-1) > top_p
            logits = logits.masked_fill(cut.scatter(-1, order, cut), float("-inf"))
        expected = logits.log_softmax(-1).gather(-1, torch.tensor(tokens)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(logprobs), expected, atol=1e-4)




@pytest.mark.ray
def test_one_step_off_pipelines_with_stale_weights_and_starts_as_the_sequential_run(
        ray_local, level_one_reasoner, cpu_train_config, tmp_path):
    model, problems = level_one_reasoner  # about 2 in 3 of its samples correct, of varied lengths: real updates
    runs = {}
    # (async steps, grade while generating): the default grades each worker's completions as they stream back
    for async_steps, streamed in ((0, True), (1, True), (0, False)):
        name = f"async-{async_steps}-{'streamed' if streamed else 'after'}"
        config = cpu_train_config(model, tmp_path / name, task_path=problems, async_steps=async_steps,
                                  grade_while_generating=streamed, steps=3, save_every=3, max_prompts=16,
                                  prompts_per_step=4, samples_per_prompt=4, generation_batch_size=4,
                                  max_new_tokens=48, train_batch_size=16, micro_batch_size=8, lr=5e-4, seed=3)
        final = train(config)
        runs[async_steps, streamed] = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl")
                                       .read_text().splitlines()]
        assert final.name == "step-3"
    sequential, pipelined, graded_after = runs[0, True], runs[1, True], runs[0, False]
    # Grading while generating changes when answers are graded, nothing else: every step's numbers are equal.
    timing = ("time", "startup/", "grading/", "tokens_per_second", "step_tokens_per_second")
    assert [{k: v for k, v in row.items() if not k.startswith(timing)} for row in sequential] == \
        [{k: v for k, v in row.items() if not k.startswith(timing)} for row in graded_after]
    assert all(row["grading/calls"] > 1 for row in sequential[1:])  # one worker, pieces of 4: several grade calls
    assert all(row["grading/calls"] == 1 for row in graded_after)
    assert [row["staleness"] for row in sequential] == [0, 0, 0]
    assert [row["staleness"] for row in pipelined] == [0, 1, 1]
    assert all("time/generate_next" in row for row in pipelined[:-1]) and "time/generate_next" not in pipelined[-1]
    assert not any("time/generate_next" in row for row in sequential)
    # step 1: the same weights and seeds sample the same completions; the old policy differs only in who scored it
    for key in ("reward", "accuracy", "mean_tokens", "max_tokens"):
        assert pipelined[0][key] == sequential[0][key], key
    # step 2 samples with the initial weights (= the KL reference) in the pipelined run, with the updated ones in
    # the sequential run: only there do the samples' old log-probs move away from the reference's
    assert abs(pipelined[1]["kl_to_ref"]) < 1e-4 < abs(sequential[1]["kl_to_ref"])
    assert abs(pipelined[2]["kl_to_ref"]) > 1e-4  # step 3 samples with step 2's weights
