"""The tiny verbose base reasoner: tokenizer, model, a short SFT, eval, the cached build."""

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ray_effreason.tasks.base import MATH_INSTRUCTION, render_prompt
from ray_effreason.tasks.synthetic import SyntheticArithmetic
from ray_effreason.tiny_reasoner import (
    TinyModelShape,
    TinyReasonerConfig,
    build_model,
    build_tiny_reasoner,
    build_tokenizer,
    evaluate_tiny,
    sft_train,
)
from ray_effreason.tiny_traces import verbose_completion

SMALL = TinyModelShape(hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_tokenizer_round_trips_prompts_and_traces(tokenizer):
    task = SyntheticArithmetic(num_examples=30)
    rng = random.Random(0)
    texts = [render_prompt(e.prompt, tokenizer) for e in task.examples]
    texts += [verbose_completion(e, rng) for e in task.examples] + [MATH_INSTRUCTION, "any other text: ü €"]
    for text in texts:
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_trace_words_digits_and_think_tags_are_single_tokens(tokenizer):
    for piece in ["check", "so", " far", "wait", " is", " it", " again", "Compute", " mod", "\\boxed",
                  "<think>", "</think>", *"0123456789+-="]:
        assert len(tokenizer(piece, add_special_tokens=False)["input_ids"]) == 1, piece
    pieces = [tokenizer.convert_tokens_to_string([token]) for token in tokenizer.tokenize("10-5+9")]
    assert pieces == list("10-5+9")


def test_build_tokenizer_is_deterministic(tokenizer):
    assert build_tokenizer().get_vocab() == tokenizer.get_vocab()


def test_chat_template_renders_user_then_assistant_prompt(tokenizer):
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Compute (1+2) mod 10."}],
                                             tokenize=False, add_generation_prompt=True)
    assert rendered == "<|bos|><|user|>Compute (1+2) mod 10.<|assistant|>"
    ids = tokenizer(rendered)["input_ids"]  # no BOS added on top of the template's
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1


def test_decode_skip_special_keeps_think_drops_eos(tokenizer):
    ids = tokenizer("<think>\n3\n</think>\n\n\\boxed{3}", add_special_tokens=False)["input_ids"]
    decoded = tokenizer.decode(ids + [tokenizer.eos_token_id], skip_special_tokens=True)
    assert decoded == "<think>\n3\n</think>\n\n\\boxed{3}"
    assert len({tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id}) == 3


def test_tokenizer_and_model_save_and_reload(tokenizer, tmp_path):
    model = build_model(tokenizer, seed=0, shape=SMALL)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    reloaded_model = AutoModelForCausalLM.from_pretrained(tmp_path)
    text = "<think>\nso far 1-5+9\n</think>"
    assert reloaded_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded_tokenizer.decode(tokenizer(text)["input_ids"]) == text
    message = [{"role": "user", "content": "Compute (1+2) mod 10."}]
    assert (reloaded_tokenizer.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
            == tokenizer.apply_chat_template(message, tokenize=False, add_generation_prompt=True))
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    assert torch.equal(reloaded_model(ids).logits, model(ids).logits)
    assert type(reloaded_model).__name__ == "Qwen2ForCausalLM"
    # transformers 5 picks the tokenizer class from config.json (qwen2) next to it: it must still match.
    assert type(reloaded_tokenizer) is type(tokenizer)


def test_model_generates_with_cache_and_stops_at_eos(tokenizer):
    model = build_model(tokenizer, seed=0, shape=SMALL)
    prompt = tokenizer(render_prompt("Compute (1+2) mod 10.", tokenizer), return_tensors="pt")
    output = model.generate(**prompt, do_sample=True, temperature=1.0, max_new_tokens=12, use_cache=True)
    assert output.shape[1] <= prompt["input_ids"].shape[1] + 12
    assert model.dtype == torch.float32 and model.generation_config.eos_token_id == tokenizer.eos_token_id


def test_short_sft_lowers_loss_clearly(tokenizer):
    model = build_model(tokenizer, seed=0, shape=TinyModelShape(hidden_size=64, num_layers=2, num_heads=2,
                                                                intermediate_size=128))
    train = SyntheticArithmetic(split="train", num_examples=600)
    metrics = sft_train(model, tokenizer, train, steps=40, batch_size=16, lr=3e-3, seed=0, num_threads=1,
                        warmup_steps=5)
    assert metrics["final_loss"] < 0.3 * metrics["first_loss"]
    assert len(metrics["losses"]) == 40 and not model.training


def test_evaluate_tiny_reports_accuracy_tokens_and_levels(tokenizer):
    model = build_model(tokenizer, seed=0, shape=SMALL)
    examples = SyntheticArithmetic(split="test", num_examples=4, levels=(1, 2), tokenizer=tokenizer).examples
    result = evaluate_tiny(model, tokenizer, examples, max_new_tokens=8, batch_size=3)
    assert result["n_samples"] == 4 and set(result["by_level"]) == {"1", "2"}
    assert 0 <= result["accuracy"] <= 1 and 1 <= result["mean_tokens"] <= 8  # untrained: rarely stops early
    assert result["tokens_over_min_tokens"] > 0


def test_build_is_cached_by_config_hash(tmp_path):
    config = TinyReasonerConfig(steps=2, batch_size=4, warmup_steps=1, num_train_examples=24, num_eval_examples=2,
                                max_new_tokens=8, shape=SMALL)
    path = build_tiny_reasoner(tmp_path, config=config)
    info = json.loads((path / "build_info.json").read_text())
    assert info["config_hash"] == config.hash() and info["sft"]["steps"] == 2 and info["eval"]["n_samples"] == 2
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_reasoner(tmp_path, config=config) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    assert AutoModelForCausalLM.from_pretrained(path).config.hidden_size == 32
    assert TinyReasonerConfig(steps=3).hash() != TinyReasonerConfig(steps=2).hash()
