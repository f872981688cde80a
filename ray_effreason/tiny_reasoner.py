"""A tiny verbose base reasoner for the synthetic task: a ~1M-parameter Qwen2 that thinks too long.

It plays the role of DeepSeek-R1-Distill-Qwen in the paper (§2: the base model that RL compresses),
at a size that trains on two CPU cores in a few minutes:

1. `build_tokenizer`: a small byte-level BPE trained locally (no hub download) in Qwen2's format:
   digits, operators and the trace words are single tokens, and decode(encode(x)) == x. Chat
   template `<|bos|><|user|>...<|assistant|>`; like the paper's training template it does not open
   `<think>`, the model writes it (PAPER.md §8).
2. `build_model`: `Qwen2ForCausalLM` (4 layers, width 64, ~0.4M parameters), fp32, `model.generate`.
3. `sft_train`: plain torch loop (loss on completion tokens only) on the train split: first on
   minimal traces, then on verbose traces with fresh redundancy every step, so the model learns to
   sample traces of widely varying length (the spread the paper's per-prompt length z-score, Eq. 1,
   feeds on) at the accuracy of the minimal ones.
4. `evaluate_tiny`: sampled generation at the paper's eval temperature 0.6 (§4): accuracy, mean
   generated tokens (EOS included, as vLLM counts them) and mean min_tokens, overall and per level.
5. `build_tiny_reasoner`: all of the above, saved in HF format with `build_info.json`; cached by a
   hash of its configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, trainers
from transformers import Qwen2Config, Qwen2ForCausalLM
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_PRETOKENIZE_REGEX
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

from ray_effreason.evaluation import sample_metrics
from ray_effreason.progress import Progress
from ray_effreason.tasks.base import MATH_INSTRUCTION, Example, render_prompt
from ray_effreason.tasks.synthetic import SyntheticArithmetic, minimal_completion, prompt_of
from ray_effreason.tiny_traces import MINIMAL, REDUNDANT_LINES, VerboseStyle, verbose_completion
from ray_effreason.verifiers import grade_math

BUILD_FORMAT = 8  # bump when the build changes in a way the config hash cannot see (8: the task's hints, issue 11)
SPECIAL_TOKENS = {"pad": "<|pad|>", "bos": "<|bos|>", "eos": "<|eos|>"}
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
THINK_TOKENS = ("<think>", "</think>")  # ordinary added tokens: kept when decoding with skip_special_tokens
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}<|system|>{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}<|user|>{{ message['content'] }}"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{{ message['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


# ---------------------------------------------------------------- tokenizer

def _tokenizer_corpus() -> list[str]:
    """Texts whose pieces should be single tokens: the prompt, every trace line kind, the instruction."""
    example = Example(id="corpus", prompt=prompt_of("3+8-5+9"), gold="5")
    lines = [make_line(("1", "-5+3", "9")) for make_line in REDUNDANT_LINES.values()]
    words = [word.strip(",.") for text in [MATH_INSTRUCTION, *lines] for word in text.split()]
    return [example.prompt, minimal_completion(example), MATH_INSTRUCTION, "Question:", *lines,
            *(" " + word for word in words if word.isalpha())]


def build_tokenizer() -> Qwen2Tokenizer:
    """A small byte-level BPE tokenizer for the synthetic task, trained locally (no hub download).

    It is a real `Qwen2Tokenizer` (Qwen2's pre-tokenizer: digits are single tokens) whose merges
    make each trace word one token; any text still encodes, byte by byte. It has to be a
    Qwen2Tokenizer: transformers 5 loads a directory whose config.json says `qwen2` with that class
    whatever tokenizer_config.json declares, so anything else would not survive save/reload.
    No BOS is added on encode (the chat template writes it), as with Qwen2.

    >>> tokenizer = build_tokenizer()
    >>> [tokenizer.convert_tokens_to_string([t]) for t in tokenizer.tokenize("so far 1-5=6")]
    ['so', ' far', ' ', '1', '-', '5', '=', '6']
    >>> tokenizer.apply_chat_template([{"role": "user", "content": "Compute (3+8) mod 10."}],
    ...                               tokenize=False, add_generation_prompt=True)
    '<|bos|><|user|>Compute (3+8) mod 10.<|assistant|>'
    """
    specials = [*SPECIAL_TOKENS.values(), *ROLE_TOKENS]
    trainer_tokenizer = Tokenizer(models.BPE())
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    # vocab_size is only a ceiling: training stops once every corpus piece is a single token.
    trainer = trainers.BpeTrainer(vocab_size=4096, min_frequency=1, special_tokens=[*specials, *THINK_TOKENS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    trainer_tokenizer.train_from_iterator(_tokenizer_corpus(), trainer)
    trained = json.loads(trainer_tokenizer.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=trained["vocab"], merges=[tuple(merge) for merge in trained["merges"]],
        unk_token=None, bos_token=SPECIAL_TOKENS["bos"], eos_token=SPECIAL_TOKENS["eos"],
        pad_token=SPECIAL_TOKENS["pad"], extra_special_tokens=list(ROLE_TOKENS), chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False, padding_side="left",  # left: for batched generation
        model_max_length=512,
    )
    tokenizer.add_tokens([AddedToken(token, normalized=False, special=False) for token in THINK_TOKENS])
    return tokenizer


# ---------------------------------------------------------------- model

@dataclass(frozen=True)
class TinyModelShape:
    """Size of the tiny Qwen2."""

    hidden_size: int = 64  # model width
    num_layers: int = 4  # transformer blocks
    num_heads: int = 2  # attention heads (key/value heads too: no GQA at this size)
    intermediate_size: int = 384  # SwiGLU width (384 learns the 200-entry step table ~30% sooner than 192)
    max_position_embeddings: int = 512  # RoPE range; prompts + completions stay far below
    # Qwen2's default 0.02 is meant for wide models: at width 64 it leaves attention uniform for
    # hundreds of steps before copying starts (measured); ~1/sqrt(width) learns copies in ~50 steps.
    initializer_range: float = 0.1
    rope_theta: float = 10_000.0  # RoPE base

    def __post_init__(self) -> None:
        head_dim, remainder = divmod(self.hidden_size, self.num_heads)
        # vLLM's flash-attention kernels take head sizes 32, 64, 96, ... (multiples of 32).
        if remainder or head_dim % 32:
            raise ValueError(f"hidden_size / num_heads must be a multiple of 32 (vLLM head sizes), "
                             f"got {self.hidden_size} / {self.num_heads}")


def build_model(tokenizer: Qwen2Tokenizer, seed: int, shape: TinyModelShape = TinyModelShape()) -> Qwen2ForCausalLM:
    """A freshly initialized tiny Qwen2ForCausalLM in fp32 whose generation stops at the tokenizer's EOS."""
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads, max_position_embeddings=shape.max_position_embeddings,
        initializer_range=shape.initializer_range,
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta},
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).float()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


# ---------------------------------------------------------------- supervised fine-tuning

def _pad_batch(rows: Sequence[tuple[list[int], list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids/attention_mask/labels from (prompt_ids, completion_ids + EOS) rows.

    Labels are -100 except on completion tokens: the loss is on what the model writes.
    """
    width = max(len(prompt) + len(completion) for prompt, completion in rows)
    input_ids = torch.full((len(rows), width), pad_token_id)  # (B, T)
    labels = torch.full((len(rows), width), -100)  # (B, T)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for row, (prompt, completion) in enumerate(rows):
        length = len(prompt) + len(completion)
        input_ids[row, :length] = torch.tensor(prompt + completion)
        labels[row, len(prompt):length] = torch.tensor(completion)
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _length_grouped_batches(examples: Sequence[Example], tokenizer: Any, rng: random.Random, style: VerboseStyle,
                            batch_size: int, group_steps: int) -> Iterator[dict[str, torch.Tensor]]:
    """Endless SFT batches of fresh verbose traces, grouped by length.

    Traces run from ~10 to ~190 tokens, so a random batch is mostly padding; drawing `group_steps`
    batches at once, sorting them by length and shuffling the resulting batches cuts the padding
    (and the CPU time) roughly in half without changing what is sampled. Each batch carries
    `loss_tokens`, the mean completion-token count of its group's batches: sft_train divides a batch's
    summed token loss by it, so every token of the group weighs the same, as in an unsorted batch. (A
    per-batch token mean would weigh a token of a batch of short traces, e.g. direct answers, several
    times more than one of a batch of long ones: measured, the base then answered level-6 problems
    directly in 46% of its samples at temperature 0.6 against the 10% of its training traces.)
    """
    while True:
        drawn = [rng.choice(examples) for _ in range(batch_size * group_steps)]
        prompt_ids = tokenizer([render_prompt(example.prompt, tokenizer) for example in drawn],
                               add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer([verbose_completion(example, rng, style) for example in drawn],
                                   add_special_tokens=False)["input_ids"]
        rows = sorted(((prompt, completion + [tokenizer.eos_token_id])
                       for prompt, completion in zip(prompt_ids, completion_ids)),
                      key=lambda row: len(row[0]) + len(row[1]))
        batches = [rows[begin:begin + batch_size] for begin in range(0, len(rows), batch_size)]
        rng.shuffle(batches)
        loss_tokens = sum(len(completion) for _, completion in rows) / len(batches)
        for batch in batches:
            yield {**_pad_batch(batch, tokenizer.pad_token_id), "loss_tokens": loss_tokens}


def sft_train(model: Qwen2ForCausalLM, tokenizer: Any, task: SyntheticArithmetic, *, steps: int, batch_size: int,
              lr: float, seed: int, num_threads: int = 2, warmup_steps: int = 50, weight_decay: float = 0.01,
              style: VerboseStyle = VerboseStyle(), minimal_steps: int = 0, group_steps: int = 8,  # noqa: B008 (frozen)
              practice_style: VerboseStyle | None = None, calibration_steps: int = 0,
              log_every: int = 0) -> dict[str, Any]:
    """Train `model` in place on `task` (the train split); returns metrics (losses, seconds, ...).

    Curriculum: the first `minimal_steps` steps use minimal traces, then traces of `practice_style`
    (default: `style`), and the last `calibration_steps` traces of `style`. A practice style with more
    shortcuts than `style` teaches the shortcut lines' harder lookups on more examples; the calibration
    phase then sets how often the model takes them (its habits are `style`'s, its skills the practice's).
    Measured on 2 CPU threads: the step table (200 `a op b` entries) and the prompt look-up
    are learned in ~600 steps on dense minimal traces, at ~40% of a verbose step's cost, while on
    verbose traces alone they take over twice as many steps; the verbose phase then only has to add
    the redundant lines and longer contexts. Each step draws `batch_size` problems and a fresh trace
    for each (batches grouped by length, see `_length_grouped_batches`). AdamW, linear warmup,
    cosine decay to 10% of `lr`, gradient-norm clip 1.0. `num_threads` sets torch's CPU threads.
    """
    torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    verbose_batches = _length_grouped_batches(task.examples, tokenizer, rng, style, batch_size, group_steps)
    practice_batches = verbose_batches if practice_style is None else _length_grouped_batches(
        task.examples, tokenizer, rng, practice_style, batch_size, group_steps)
    minimal_batches = _length_grouped_batches(task.examples, tokenizer, rng, MINIMAL, batch_size, group_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    losses, num_tokens, start, cpu_start = [], 0, time.perf_counter(), time.process_time()
    progress = Progress(steps, "sft", unit="step") if log_every else None  # a line every 10 s, with the loss
    for step in range(steps):
        batch = next(minimal_batches if step < minimal_steps else
                     practice_batches if step < steps - calibration_steps else verbose_batches)
        loss_tokens = batch.pop("loss_tokens")
        # HF shifts labels and means over the batch's completion tokens: rescaled to the group's (see above)
        loss = model(**batch).loss * int((batch["labels"] != -100).sum()) / loss_tokens
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        num_tokens += int(batch["attention_mask"].sum())
        if progress is not None:
            recent = losses[-log_every:]
            progress.update(1, f"loss {sum(recent) / len(recent):.4f} (mean of the last {len(recent)} steps)")
    if progress is not None:
        progress.close()
    model.eval()
    seconds = time.perf_counter() - start
    tail = losses[-max(1, min(20, steps // 10 or 1)):]
    return {"steps": steps, "first_loss": losses[0] if losses else None,
            "final_loss": sum(tail) / len(tail) if tail else None, "losses": losses,
            "seconds": seconds, "cpu_seconds": time.process_time() - cpu_start,
            "tokens_per_second": num_tokens / seconds if seconds else None}


# ---------------------------------------------------------------- evaluation

def evaluate_tiny(model: Qwen2ForCausalLM, tokenizer: Any, examples: Sequence[Example], temperature: float = 0.6,
                  max_new_tokens: int = 256, batch_size: int = 100, seed: int = 0) -> dict[str, Any]:
    """Sample one completion per example -> evaluation.sample_metrics (accuracy, tokens, by_level, ...)."""
    records = sample_tiny(model, tokenizer, examples, temperature, max_new_tokens, batch_size, seed)
    # The same metrics (and names) as evaluation and the sweep: evaluation.sample_metrics.
    return {**sample_metrics(records), "samples": [record["text"] for record in records[:3]]}


@torch.no_grad()
def sample_tiny(model: Qwen2ForCausalLM, tokenizer: Any, examples: Sequence[Example], temperature: float = 0.6,
                max_new_tokens: int = 256, batch_size: int = 100, seed: int = 0) -> list[dict[str, Any]]:
    """One graded completion per example, as evaluation records plus its `text`.

    Generated tokens count up to and including EOS (paper §4 `avg_tokens`); a completion without EOS
    counts `max_new_tokens` and is graded as it stands.
    """
    torch.manual_seed(seed)
    model.eval()
    records = []
    for begin in range(0, len(examples), batch_size):
        chunk = examples[begin:begin + batch_size]
        prompts = tokenizer([render_prompt(example.prompt, tokenizer) for example in chunk],
                            add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
        output = model.generate(**prompts, do_sample=True, temperature=temperature, top_p=1.0, top_k=0,
                                max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id)
        generated = output[:, prompts["input_ids"].shape[1]:]  # (B, T)
        for example, ids in zip(chunk, generated.tolist()):
            eos_at = ids.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in ids else None
            ids = ids if eos_at is None else ids[:eos_at + 1]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            records.append({"problem_id": example.id, "sample_index": 0, "num_tokens": len(ids),
                            "finish_reason": "length" if eos_at is None else "stop", "extracted_answer": None,
                            "correct": grade_math(text, example.gold), "level": example.level,
                            "min_tokens": example.min_tokens, "text": text})
    return records


# ---------------------------------------------------------------- the cached build

@dataclass(frozen=True)
class TinyReasonerConfig:
    """Everything that determines a tiny reasoner build (its hash names the cache entry)."""

    seed: int = 0  # model init, SFT sampling and eval sampling
    steps: int = 2000  # SFT optimizer steps in all (1,500: 87-90% accuracy; 2,000: 95%, measured)
    minimal_steps: int = 600  # of which the first ones are on minimal traces (see sft_train)
    batch_size: int = 32  # sequences per step
    lr: float = 3e-3  # peak AdamW learning rate
    warmup_steps: int = 50  # linear warmup
    levels: tuple[int, ...] = (1, 2, 3, 4, 5, 6)  # synthetic difficulty levels
    num_train_examples: int = 10_000  # train-split problems to draw from
    num_eval_examples: int = 300  # test-split problems evaluated after training
    max_new_tokens: int = 256  # eval generation cap (a level-6 verbose trace is under ~200 tokens)
    shape: TinyModelShape = TinyModelShape()
    style: VerboseStyle = VerboseStyle()  # the base's habits: what the last `calibration_steps` train on
    # More shortcuts while practising: merged lines are a 4,000-entry lookup, learned on few examples at
    # `style`'s rate (measured: merged traces 45% correct against 96% for careful ones).
    practice_style: VerboseStyle | None = VerboseStyle(merge_probability=0.5, direct_probability=0.2)
    calibration_steps: int = 400

    def hash(self) -> str:
        payload = json.dumps({"format": BUILD_FORMAT, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_tiny_reasoner(output_dir: str | Path, *, seed: int = 0, steps: int = TinyReasonerConfig.steps,
                        num_threads: int = 2, config: TinyReasonerConfig | None = None, log_every: int = 100) -> Path:
    """Build tokenizer + model, SFT on verbose traces, evaluate on the test split, save (HF format).

    Cached: when `output_dir/build_info.json` holds the same config hash, returns at once.
    `config` overrides everything; otherwise `seed` and `steps` adjust the defaults.
    """
    config = config or TinyReasonerConfig(seed=seed, steps=steps)
    output_dir = Path(output_dir)
    info_path = output_dir / "build_info.json"
    if info_path.is_file() and json.loads(info_path.read_text()).get("config_hash") == config.hash():
        return output_dir
    torch.set_num_threads(num_threads)
    start = time.perf_counter()
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, config.seed, config.shape)
    train = SyntheticArithmetic(split="train", num_examples=config.num_train_examples, levels=config.levels,
                                seed=config.seed)
    metrics = sft_train(model, tokenizer, train, steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                        seed=config.seed, num_threads=num_threads, warmup_steps=config.warmup_steps,
                        style=config.style, minimal_steps=config.minimal_steps, practice_style=config.practice_style,
                        calibration_steps=config.calibration_steps, log_every=log_every)
    test = SyntheticArithmetic(split="test", num_examples=config.num_eval_examples, levels=config.levels,
                               seed=config.seed, tokenizer=tokenizer)
    evaluation = evaluate_tiny(model, tokenizer, test.examples, max_new_tokens=config.max_new_tokens, seed=config.seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    info_path.unlink(missing_ok=True)  # written last: its presence marks a complete build
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    info = {"config_hash": config.hash(), "config": dataclasses.asdict(config),
            "num_parameters": sum(parameter.numel() for parameter in model.parameters()),
            "sft": {key: value for key, value in metrics.items() if key != "losses"},
            "eval": {key: value for key, value in evaluation.items() if key != "samples"},
            "seconds": time.perf_counter() - start}
    info_path.write_text(json.dumps(info, indent=2))
    return output_dir
