"""Measure the tiny reasoner: SFT step time per model shape, and full builds (accuracy, tokens, time).

    python bench/bench_tiny_reasoner.py speed                      # seconds per SFT step per shape
    python bench/bench_tiny_reasoner.py build                      # the default build: accuracy, tokens, time
    python bench/bench_tiny_reasoner.py profile --output runs/tiny_reasoner  # what it writes, per level
    python bench/bench_tiny_reasoner.py profile --output runs/tiny_reasoner --split train --temperature 1.0
                                                   # ... at RL's temperature, beside the hint's accuracy
    python bench/bench_tiny_reasoner.py build --steps 1200 --minimal-steps 500 --levels 12345 ...

Uses 2 torch threads (the newcomer laptop); on a shared machine timings are noisy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from ray_effreason.tasks.synthetic import SyntheticArithmetic
from ray_effreason.tiny_reasoner import (
    TinyModelShape,
    TinyReasonerConfig,
    build_model,
    build_tiny_reasoner,
    build_tokenizer,
    sft_train,
)
from ray_effreason.tiny_traces import VerboseStyle

SPEED_STEPS = 20  # SFT steps timed per shape in `speed` mode


def speed(args: argparse.Namespace) -> None:
    tokenizer = build_tokenizer()
    train = SyntheticArithmetic(split="train", num_examples=2000)
    for hidden, layers in [(64, 2), (64, 4), (96, 3), (128, 4)]:
        shape = TinyModelShape(hidden_size=hidden, num_layers=layers, num_heads=hidden // 32,
                               intermediate_size=6 * hidden)
        model = build_model(tokenizer, 0, shape)
        metrics = sft_train(model, tokenizer, train, steps=SPEED_STEPS, batch_size=args.batch_size, lr=1e-3, seed=0,
                            num_threads=args.threads, warmup_steps=5)
        print(f"hidden {hidden} layers {layers} params {sum(p.numel() for p in model.parameters())}: "
              f"{metrics['seconds'] / SPEED_STEPS:.3f} s/step ({metrics['cpu_seconds'] / SPEED_STEPS:.3f} cpu-s), "
              f"{metrics['tokens_per_second']:.0f} tokens/s", flush=True)


def profile(args: argparse.Namespace) -> None:
    """What a built model writes on `--split`: per level, accuracy and tokens by trace kind, and the accuracy of the
    prompts' hint (what a direct answer can reach; docs/sweep.md sets its slope against "single" at 1.0)."""
    import collections

    import torch
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    from ray_effreason.tasks.synthetic import hint_accuracy
    from ray_effreason.tiny_reasoner import sample_tiny
    from ray_effreason.tiny_traces import trace_profile

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.output)
    model = Qwen2ForCausalLM.from_pretrained(args.output).eval()
    test = SyntheticArithmetic(split=args.split, num_examples=args.examples, tokenizer=tokenizer)
    table: dict = collections.defaultdict(list)
    for record in sample_tiny(model, tokenizer, test.examples, temperature=args.temperature, seed=args.seed):
        kind = trace_profile(record["text"])
        name = "direct" if kind["direct"] else ("merged" if kind["merged"] else "single")
        table[(record["level"], name)].append((record["correct"], record["num_tokens"]))
    for level in sorted({level for level, _ in table}):
        cells = []
        for name in ("single", "merged", "direct"):
            rows = table.get((level, name), [])
            if rows:
                cells.append(f"{name} n={len(rows)} acc={sum(r[0] for r in rows) / len(rows):.2f} "
                             f"tok={sum(r[1] for r in rows) / len(rows):.0f}")
        everything = [row for name in ("single", "merged", "direct") for row in table.get((level, name), [])]
        print(f"L{level}: acc={sum(r[0] for r in everything) / len(everything):.2f} "
              f"tok={sum(r[1] for r in everything) / len(everything):.1f} hint={hint_accuracy(level):.2f} | "
              + " | ".join(cells), flush=True)


def build(args: argparse.Namespace) -> None:
    config = TinyReasonerConfig(
        seed=args.seed, steps=args.steps, minimal_steps=args.minimal_steps, batch_size=args.batch_size, lr=args.lr,
        warmup_steps=args.warmup, levels=tuple(int(level) for level in args.levels),
        shape=TinyModelShape(hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
                             intermediate_size=args.intermediate),
        style=VerboseStyle(redundancy_probability=args.redundancy, concise_probability=args.concise,
                           merge_probability=args.merge, direct_probability=args.direct),
        practice_style=VerboseStyle(merge_probability=args.practice_merge, direct_probability=args.practice_direct),
        calibration_steps=args.calibration_steps)
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        path = build_tiny_reasoner(args.output or directory, config=config, num_threads=args.threads,
                                   log_every=args.log_every)
        info = json.loads((path / "build_info.json").read_text())
        print(json.dumps({"args": vars(args), "wall_s": time.perf_counter() - start,
                          "num_parameters": info["num_parameters"],
                          "sft": {k: info["sft"][k] for k in ("first_loss", "final_loss", "seconds", "cpu_seconds")},
                          "eval": info["eval"], "build_s": info["seconds"]}, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["speed", "build", "profile"], help="what to measure")
    parser.add_argument("--steps", type=int, default=TinyReasonerConfig.steps, help="SFT steps (speed: 20)")
    parser.add_argument("--minimal-steps", type=int, default=TinyReasonerConfig.minimal_steps,
                        help="first SFT steps on minimal traces")
    parser.add_argument("--levels", default="123456", help="synthetic levels, e.g. 12345")
    parser.add_argument("--batch-size", type=int, default=TinyReasonerConfig.batch_size, help="sequences per SFT step")
    parser.add_argument("--lr", type=float, default=TinyReasonerConfig.lr, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=TinyReasonerConfig.warmup_steps, help="warmup steps")
    parser.add_argument("--hidden", type=int, default=TinyModelShape.hidden_size, help="model width")
    parser.add_argument("--layers", type=int, default=TinyModelShape.num_layers, help="transformer blocks")
    parser.add_argument("--heads", type=int, default=TinyModelShape.num_heads, help="attention heads")
    parser.add_argument("--intermediate", type=int, default=TinyModelShape.intermediate_size, help="MLP width")
    parser.add_argument("--redundancy", type=float, default=VerboseStyle.redundancy_probability,
                        help="P(one more redundant line) per step boundary")
    parser.add_argument("--concise", type=float, default=VerboseStyle.concise_probability,
                        help="P(a trace has no redundant line)")
    parser.add_argument("--merge", type=float, default=VerboseStyle.merge_probability,
                        help="P(two operations on one line)")
    parser.add_argument("--direct", type=float, default=VerboseStyle.direct_probability,
                        help="P(a trace answers directly)")
    practice = TinyReasonerConfig.practice_style
    parser.add_argument("--practice-merge", type=float, default=practice.merge_probability,
                        help="P(two operations on one line) while practising (before calibration)")
    parser.add_argument("--practice-direct", type=float, default=practice.direct_probability,
                        help="P(a direct answer) while practising")
    parser.add_argument("--calibration-steps", type=int, default=TinyReasonerConfig.calibration_steps,
                        help="last SFT steps on the final style")
    parser.add_argument("--seed", type=int, default=0, help="build seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--output", default="", help="keep the build here (default: a temporary directory)")
    parser.add_argument("--examples", type=int, default=600, help="profile: problems")
    parser.add_argument("--split", default="test", choices=["train", "test"], help="profile: the problems' split")
    parser.add_argument("--temperature", type=float, default=0.6, help="profile: sampling temperature")
    parser.add_argument("--log-every", type=int, default=100, help="print SFT loss every N steps")
    arguments = parser.parse_args()
    {"speed": speed, "build": build, "profile": profile}[arguments.mode](arguments)
