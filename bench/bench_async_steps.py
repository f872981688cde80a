"""One-step-off pipelining (--async-steps 1) against the sequential loop: step time and the learning curve.

    python bench/bench_async_steps.py                 # ~6 min on 2 cores once the tiny reasoner is built
    python bench/bench_async_steps.py --steps 30 --seeds 0,1

Both runs train the tiny reasoner (tiny_reasoner.build_tiny_reasoner, cached under --model-dir) with the `tiny`
training preset (presets.py: B 16, G 8, 256 new tokens, alpha 0.2), the same seed, prompts and sample seeds;
only --async-steps differs. Per run: the median wall time of a rollout step after the first (the gap between
step records in metrics.jsonl, so start-up is out), the time blocked on generation (time/generate +
time/generate_next), and per step the reward, accuracy and mean tokens. Writes docs/async_steps.png (reward and
mean tokens vs step, both modes) and prints a markdown table for docs/benchmarks.md.

Generation and the update share the node's cores in one-step-off mode: the gain here is what overlapping them
buys on 2 CPU cores (each actor gets 1 thread), not what a GPU node with separate devices would see.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(mode: int, seed: int, steps: int, model: str, output_dir: Path) -> list[dict]:
    import ray

    from ray_effreason.config import TrainConfig
    from ray_effreason.config_tree import from_flat
    from ray_effreason.driver import train
    from ray_effreason.presets import TRAIN_PRESETS

    shutil.rmtree(output_dir, ignore_errors=True)
    flat = {**TRAIN_PRESETS["tiny"], "model": model, "device": "cpu", "steps": steps, "save_every": steps,
            "seed": seed, "async_steps": mode, "output_dir": str(output_dir), "run_name": f"async-{mode}-seed-{seed}"}
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}})
    try:
        train(from_flat(TrainConfig, flat, where="bench_async_steps"))
    finally:
        ray.shutdown()
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def summary(records: list[dict]) -> dict[str, float]:
    gaps = [later["time"] - earlier["time"] for earlier, later in zip(records, records[1:])]
    blocked = [row["time/generate"] + row.get("time/generate_next", 0.0) for row in records[1:]]
    return {"step_s": statistics.median(gaps), "generate_blocked_s": statistics.median(blocked),
            "update_s": statistics.median(row["time/update"] for row in records[1:]),
            "reward_last5": statistics.fmean(row["reward"] for row in records[-5:]),
            "accuracy_last5": statistics.fmean(row["accuracy"] for row in records[-5:]),
            "tokens_last5": statistics.fmean(row["mean_tokens"] for row in records[-5:])}


def plot(curves: dict[tuple[int, int], list[dict]], path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 4))
    for index, (key, label) in enumerate((("reward", "mean reward of the step's samples"),
                                          ("mean_tokens", "mean generated tokens per sample"))):
        axes = figure.add_subplot(1, 2, index + 1)
        for (mode, seed), records in sorted(curves.items()):
            axes.plot([row["step"] for row in records], [row[key] for row in records], color=f"C{mode}",
                      linestyle="-" if seed == min(s for _, s in curves) else "--",
                      label=f"{'one step off' if mode else 'sequential'}, seed {seed}")
        axes.set_xlabel("rollout step")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.suptitle("tiny reasoner, tiny preset (alpha 0.2): --async-steps 0 vs 1")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds, each run in both modes")
    parser.add_argument("--model-dir", default=str(REPO / "runs" / "tiny_reasoner"))
    parser.add_argument("--output-dir", default=str(REPO / "runs" / "bench_async"))
    parser.add_argument("--plot", default=str(REPO / "docs" / "async_steps.png"))
    arguments = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ray_effreason.tiny_reasoner import build_tiny_reasoner

    model = str(build_tiny_reasoner(arguments.model_dir))
    curves = {}
    for seed in (int(value) for value in arguments.seeds.split(",")):
        for mode in (0, 1):  # alternating, so drifting load hits both
            curves[mode, seed] = run(mode, seed, arguments.steps, model,
                                     Path(arguments.output_dir) / f"async-{mode}-seed-{seed}")
    plot(curves, Path(arguments.plot))
    print("| mode | seed | step s (median) | blocked on generation s | update s | reward, last 5 | accuracy, last 5 "
          "| mean tokens, last 5 |\n|---|---|---|---|---|---|---|---|")
    for (mode, seed), records in sorted(curves.items()):
        row = summary(records)
        print(f"| {'one step off' if mode else 'sequential'} | {seed} | {row['step_s']:.2f} | "
              f"{row['generate_blocked_s']:.2f} | {row['update_s']:.2f} | {row['reward_last5']:.3f} | "
              f"{100 * row['accuracy_last5']:.1f}% | {row['tokens_last5']:.1f} |")
    print(f"plot: {arguments.plot}")


if __name__ == "__main__":
    main()
