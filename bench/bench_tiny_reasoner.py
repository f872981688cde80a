"""Measure the tiny reasoner: SFT step time per model shape, and full builds (accuracy, tokens, time).

    python bench/bench_tiny_reasoner.py speed                      # seconds per SFT step per shape
    python bench/bench_tiny_reasoner.py build                      # the default build: accuracy, tokens, time
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


def build(args: argparse.Namespace) -> None:
    config = TinyReasonerConfig(
        seed=args.seed, steps=args.steps, minimal_steps=args.minimal_steps, batch_size=args.batch_size, lr=args.lr,
        warmup_steps=args.warmup, levels=tuple(int(level) for level in args.levels),
        shape=TinyModelShape(hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
                             intermediate_size=args.intermediate),
        style=VerboseStyle(redundancy_probability=args.redundancy, concise_probability=args.concise))
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
    parser.add_argument("mode", choices=["speed", "build"], help="what to measure")
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
    parser.add_argument("--seed", type=int, default=0, help="build seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--output", default="", help="keep the build here (default: a temporary directory)")
    parser.add_argument("--log-every", type=int, default=100, help="print SFT loss every N steps")
    arguments = parser.parse_args()
    {"speed": speed, "build": build}[arguments.mode](arguments)
