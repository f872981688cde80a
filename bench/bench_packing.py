"""Sequence packing (--max-tokens-per-micro-batch, issue 15): the learner's update time per RL step and its peak
memory, right-padded micro-batches vs packed ones, on a batch with the tiny reasoner's length spread.

    .venv/bin/python bench/bench_packing.py --repeats 5

What runs: `LearnerWorker.train` (DeepSpeed ZeRO-0, one rank on gloo, in this process, no Ray) on the tiny
reasoner's model (`tiny_reasoner.build_model`, untrained: time and memory follow the shapes, not the weights) with
the tiny preset's update: one RL step of B*G = 16 * 8 = 128 samples, train_batch_size 64 (two optimizer steps),
KL 1e-3 (so reference log-probs too), seq-mean-token-mean, max_new_tokens 256. The samples: prompts of 16-24
tokens (uniform), completions log-normal with median 60 and sigma 0.6, clipped to 15-250 tokens (mean ~72: the
tiny reasoner generates 74 on average, up to ~225), seed 0, in the driver's shuffled order.

Configurations: padded --micro-batch-size 16 (the tiny preset) and 4; packed, padding-free, with budgets of
512 to 4096 tokens; packed but right-padded (the budget counting padding: what the learner does for a model that
cannot take padding-free rows), 2048 and 4096.

Time: the median (and range) of --repeats `train` calls per configuration after one warm-up call, the
configurations taking turns in one process so that drifting load hits all of them. Memory: a fresh process per
configuration and one `train` call; on CPU the rise of the process's RSS high-water mark (VmHWM) over its RSS just
before the call (what the update allocates: activations, logits, the optimizer state's first allocation); on CUDA
torch.cuda.max_memory_allocated over memory_allocated before the call. Then, on CPU, the share of attention
kernels in one forward + backward (torch.profiler) of a padded and of a padding-free micro-batch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {  # name -> LearnerConfig fields, and "right_padded" for packed micro-batches right-padded
    "padded, micro_batch_size 16": {"micro_batch_size": 16},
    "padded, micro_batch_size 4": {"micro_batch_size": 4},
    "packed, 512 tokens": {"max_tokens_per_micro_batch": 512},
    "packed, 1024 tokens": {"max_tokens_per_micro_batch": 1024},
    "packed, 2048 tokens": {"max_tokens_per_micro_batch": 2048},
    "packed, 4096 tokens": {"max_tokens_per_micro_batch": 4096},
    "packed right-padded, 2048 tokens": {"max_tokens_per_micro_batch": 2048, "right_padded": True},
    "packed right-padded, 4096 tokens": {"max_tokens_per_micro_batch": 4096, "right_padded": True},
}


def rollout_samples(seed: int = 0, count: int = 128, vocab_size: int = 350):
    """The batch: the tiny reasoner's length spread (module docstring), random token ids."""
    import numpy as np

    from ray_effreason.batching import Sample

    rng = np.random.default_rng(seed)
    prompts = rng.integers(16, 25, size=count)
    completions = np.clip(np.round(rng.lognormal(np.log(60.0), 0.6, size=count)), 15, 250).astype(int)
    return [Sample(prompt_token_ids=rng.integers(4, vocab_size, size=int(p)).tolist(),
                   token_ids=rng.integers(4, vocab_size, size=int(c)).tolist(), advantage=float(rng.normal()))
            for p, c in zip(prompts, completions)]


def tokens_processed(samples, fields: dict) -> tuple[int, int]:
    """(micro-batches, token positions the forward passes run over) for one RL step: padding counts when padded."""
    from ray_effreason.batching import micro_batches
    from ray_effreason.packing import budget_groups, fewest_micro_batches

    if "micro_batch_size" in fields:
        batches = micro_batches(samples, fields["micro_batch_size"], pad_id=0)
        return len(batches), sum(batch.input_ids.numel() for batch in batches)
    budget, padding_free = fields["max_tokens_per_micro_batch"], not fields.get("right_padded", False)
    count = positions = 0
    for step in (samples[:64], samples[64:]):
        lengths = [sample.num_tokens for sample in step]
        groups = budget_groups(lengths, budget, fewest_micro_batches(lengths, budget, padding_free), padding_free)
        count += len(groups)
        positions += sum(len(group) * max(lengths[group.start:group.stop]) if not padding_free
                         else sum(lengths[group.start:group.stop]) for group in groups)
    return count, positions


def make_learner(model_path: str, port: int, fields: dict, device: str, threads: int):
    from ray_effreason.actors.learner import LearnerWorker
    from ray_effreason.config import LearnerConfig, LossConfig

    right_padded = fields.get("right_padded", False)
    learner = LearnerConfig(zero_stage=0, lr=1e-4, warmup_steps=0, train_batch_size=64,
                            **{name: value for name, value in fields.items() if name != "right_padded"})
    worker = LearnerWorker(0, 1, "127.0.0.1", port, model_path, learner,
                           LossConfig(kl_coef=1e-3, aggregation="seq-mean-token-mean"), 1.0, 256, device, 0,
                           num_threads=threads)
    if right_padded:  # what the learner falls back to for a model that cannot take padding-free rows
        worker.padding_free = False
    return worker


def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (the high-water mark) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def measure_memory(args: argparse.Namespace) -> None:
    """In a fresh process: one train call of one configuration; prints the peak rise in MB as JSON."""
    import torch

    from ray_effreason.actors.weight_sync import free_port

    learner = make_learner(args.model_path, free_port(), CONFIGS[args.memory_of], args.device, args.threads)
    samples = rollout_samples()
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        learner.train(samples)
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        before = rss_mb("VmRSS")
        learner.train(samples)
        peak = rss_mb("VmHWM") - before
    print(json.dumps({"peak_mb": peak}))


def measure_time(model_path: str, args: argparse.Namespace) -> dict[str, list[float]]:
    import torch

    from ray_effreason.actors.weight_sync import free_port

    port = free_port()
    learners = {name: make_learner(model_path, port, fields, args.device, args.threads)
                for name, fields in CONFIGS.items()}
    samples = rollout_samples()
    seconds: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for name, learner in learners.items():
            start = time.perf_counter()
            learner.train(samples)
            if args.device == "cuda":
                torch.cuda.synchronize()
            if repeat:
                seconds[name].append(time.perf_counter() - start)
        print(f"round {repeat}/{args.repeats} done", file=sys.stderr, flush=True)
    return seconds


def attention_share(model_path: str, threads: int) -> list[tuple[str, int, float]]:
    """(micro-batch, its token positions, share of one forward + backward's CPU time in attention kernels), by
    torch.profiler, for the first micro-batch of the first step: padded 16 samples, and packed into 4096 tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    from ray_effreason.actors.learner import micro_batch_logprobs
    from ray_effreason.batching import micro_batches
    from ray_effreason.packing import budget_groups, fewest_micro_batches, packed_micro_batches

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    step = rollout_samples()[:64]
    lengths = [sample.num_tokens for sample in step]
    padded = micro_batches(step[:16], 16, pad_id=0)[0]
    packed = packed_micro_batches(step, budget_groups(lengths, 4096, fewest_micro_batches(lengths, 4096)), 0)[0]
    shares = []
    for name, batch in ((f"padded {tuple(padded.input_ids.shape)}", padded),
                        (f"padding-free row {tuple(packed.input_ids.shape)}", packed)):
        micro_batch_logprobs(model, batch, 1.0).sum().backward()  # warm-up
        with torch.profiler.profile() as profile:
            micro_batch_logprobs(model, batch, 1.0).sum().backward()
        events = profile.key_averages()
        total = sum(event.self_cpu_time_total for event in events)
        attention = sum(event.self_cpu_time_total for event in events if "scaled_dot_product" in event.key)
        shares.append((name, batch.input_ids.numel(), attention / total))
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed train calls per configuration (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the learner")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--memory-of", choices=list(CONFIGS), help=argparse.SUPPRESS)  # the memory subprocess
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        return measure_memory(args)

    from ray_effreason.tiny_reasoner import build_model, build_tokenizer

    with tempfile.TemporaryDirectory() as model_path:
        tokenizer = build_tokenizer()
        build_model(tokenizer, seed=0).save_pretrained(model_path)
        peaks = {}
        for name in CONFIGS:
            command = [sys.executable, __file__, "--memory-of", name, "--model-path", model_path,
                       "--threads", str(args.threads), "--device", args.device]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            peaks[name] = json.loads(output.strip().splitlines()[-1])["peak_mb"]
            print(f"memory of {name!r} measured", file=sys.stderr, flush=True)
        seconds = measure_time(model_path, args)
        shares = attention_share(model_path, args.threads) if args.device == "cpu" else []

    samples = rollout_samples()
    real = sum(sample.num_tokens for sample in samples)
    memory = "peak CUDA memory, MB" if args.device == "cuda" else "peak RSS rise, MB"
    print(f"\n{len(samples)} samples, {real} tokens (prompt + completion); {args.repeats} repeats, "
          f"{args.threads} thread(s), {args.device}\n")
    print(f"| configuration | micro-batches | token positions run | s per RL step, median (range) | {memory} |")
    print("|---|---|---|---|---|")
    for name, fields in CONFIGS.items():
        count, positions = tokens_processed(samples, fields)
        times = seconds[name]
        print(f"| {name} | {count} | {positions:,} ({positions / real:.2f}x) | {statistics.median(times):.2f} "
              f"({min(times):.2f}-{max(times):.2f}) | {peaks[name]:.0f} |")
    for name, positions, share in shares:
        print(f"\nattention kernels (scaled_dot_product_*): {share:.0%} of one forward + backward of a {name}, "
              f"{positions:,} token positions", end="")
    print()


if __name__ == "__main__":
    main()
