"""The generation worker in-process (transformers backend, a real tiny Qwen2): prompt templates reach it."""

from ray_effreason.actors.generator import GenerationWorker, SampleRequest
from ray_effreason.config import RolloutConfig
from ray_effreason.tasks.base import prompt_token_ids


def test_the_rollout_prompt_template_decides_the_prompt_tokens(tiny_model):
    worker = GenerationWorker(tiny_model, None, "transformers", "cpu", seed=0)
    request = SampleRequest(0, 0, 0, "Compute (1 + 2) mod 10.", seed=1)
    for template in ("chat", "paper"):
        sampling = RolloutConfig(max_new_tokens=2, prompt_template=template).sampling()
        [completion] = worker.generate([request], sampling)
        assert completion.prompt_token_ids == prompt_token_ids(request.prompt, worker.tokenizer, template)
    chat, paper = (prompt_token_ids(request.prompt, worker.tokenizer, name) for name in ("chat", "paper"))
    assert chat != paper  # the tiny tokenizer's chat template vs the paper's literal R1 string
