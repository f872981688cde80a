"""Ask for a budget, not an alpha: the controller's runs beside the fixed-alpha family, on the built-in task.

    make sweep                                     # the fixed-alpha family: runs/sweep/summary.json
    .venv/bin/python bench/bench_controller.py     # + two controller runs, evaluated the same way

Two runs from the tiny base (the tiny preset, no alpha given): `--target-token-ratio 0.6` (alpha driven
toward 60% of the base's mean tokens on the training prompts) and `--accuracy-floor F` (alpha rises while
the batch accuracy holds F). Both are evaluated with the sweep's evaluation (300 test problems, the same
seeds, temperature 0.6), and drawn on the family's accuracy-vs-tokens plot. Writes docs/controller.md and
docs/controller.png (numbers measured, with the command).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def last_steps(run_dir: Path, count: int = 5) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return lines[-count:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", type=Path, default=REPO / "runs" / "sweep" / "summary.json",
                        help="summary.json of the fixed-alpha sweep (make sweep)")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "controller")
    parser.add_argument("--target-token-ratio", type=float, default=0.6)
    parser.add_argument("--accuracy-floor", type=float, default=0.85)
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    args = parser.parse_args()

    import ray

    from ray_effreason.config import SweepConfig, TrainConfig
    from ray_effreason.config_tree import from_flat
    from ray_effreason.driver import train
    from ray_effreason.eval_runner import evaluate
    from ray_effreason.family_plots import plot_family
    from ray_effreason.presets import SWEEP_PRESETS, TRAIN_PRESETS
    from ray_effreason.sweep import family_eval_config, family_view
    from ray_effreason.tiny_reasoner import build_tiny_reasoner

    started = time.perf_counter()
    base = str(build_tiny_reasoner(REPO / "runs" / "tiny_reasoner"))
    ray.init(address="local")  # its own instance, never the token-guarded head `make sweep` leaves running
    runs = {f"target-{args.target_token_ratio:g}": {"target_token_ratio": args.target_token_ratio},
            f"floor-{args.accuracy_floor:g}": {"accuracy_floor": args.accuracy_floor}}
    finals, seconds = {}, {}
    for name, knobs in runs.items():
        run_dir = args.output / name
        config = from_flat(TrainConfig, {**TRAIN_PRESETS["tiny"], **knobs, "model": base, "output_dir": str(run_dir),
                                         "run_name": name, "resume": (run_dir / "checkpoints").exists()})
        clock = time.perf_counter()
        finals[name] = str(train(config)) if not (run_dir / "final_checkpoint").exists() else (
            run_dir / "final_checkpoint").read_text().strip()
        seconds[name] = time.perf_counter() - clock
    sweep = from_flat(SweepConfig, {**SWEEP_PRESETS["tiny"], "output_dir": str(args.output)})
    sweep = replace(sweep, train=replace(sweep.train, model=replace(sweep.train.model, model=base)))
    names = ("base", *finals)
    eval_config = family_eval_config(sweep, (base, *finals.values()), names, args.output / "eval")
    labels = {"base": {"alpha": None}}
    for name in finals:
        steps = last_steps(args.output / name)
        labels[name] = {"alpha": steps[-1].get("controller/alpha"),
                        "target": args.target_token_ratio if name.startswith("target") else None}
    summary = evaluate(eval_config, labels=labels)
    entries = family_view(summary, labels, "synthetic")
    family = json.loads(args.family.read_text())["family"] if args.family.is_file() else entries[:1]
    plot_family(family, args.docs / "controller.png", args.output / "controller_levels.png",
                others=[entry for entry in entries if entry["name"] != "base"])

    base_entry = next(entry for entry in entries if entry["name"] == "base")
    lines = ["# Ask for a budget, not an alpha: measured", "",
             "Command: `make sweep` (the fixed-alpha family), then `.venv/bin/python bench/bench_controller.py` "
             f"(2 CPU cores; {time.perf_counter() - started:.0f} s for the runs below).", "",
             "| run | final alpha | last-5-steps mean tokens (train batch) | target | test accuracy | test mean tokens "
             "| tokens vs base | batch accuracy, last 5 steps |", "|---|---|---|---|---|---|---|---|"]
    for entry in entries:
        if entry["name"] == "base":
            lines.append(f"| base | - | - | - | {100 * entry['accuracy']:.1f}% | {entry['mean_tokens']:.1f} "
                         "| 100% | - |")
            continue
        steps = last_steps(args.output / entry["name"])
        tokens = sum(step["mean_tokens"] for step in steps) / len(steps)
        target = steps[-1].get("controller/target_tokens")
        accuracy = sum(step["accuracy"] for step in steps) / len(steps)
        lines.append(f"| {entry['name']} | {entry['alpha']:.3f} | {tokens:.1f} | "
                     f"{'-' if target is None else format(target, '.1f')} | {100 * entry['accuracy']:.1f}% | "
                     f"{entry['mean_tokens']:.1f} | {100 * entry['mean_tokens'] / base_entry['mean_tokens']:.0f}% | "
                     f"{100 * accuracy:.1f}% |")
    lines += ["", "![the controller's runs beside the fixed-alpha family](controller.png)", "",
              f"Training seconds: {json.dumps({name: round(value) for name, value in seconds.items()})}."]
    (args.docs / "controller.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
