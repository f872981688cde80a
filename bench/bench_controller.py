"""Ask for a budget, not an alpha: the controller's runs beside the fixed-alpha family, on the built-in task.

    make sweep                                     # the fixed-alpha family: runs/sweep/summary.json
    .venv/bin/python bench/bench_controller.py     # + three controller runs, evaluated the same way

Five runs from the tiny base (the tiny preset, no alpha given), each evaluated with the sweep's evaluation
(300 test problems, the same seeds, temperature 0.6) and drawn on the family's accuracy-vs-tokens plot:
`--target-token-ratio R` and `--accuracy-floor F` under the default PID controller reading its probe (64
held-out prompts at temperature 0.6; alpha_controller.py), the same two under plain dual ascent (LACONIC's,
Leash's and A-DLP's update: K_p = K_d = 0, K_i 0.05 / 1.0, from alpha 0.2), and dual ascent reading the training
batch (temperature 1.0). Writes docs/controller.md and docs/controller.png (numbers measured, with the command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The controller before its proportional and derivative terms (session 6): projected dual ascent from alpha 0.2.
DUAL_ASCENT = {"controller_kp": 0.0, "controller_kd": 0.0, "accuracy_kp": 0.0, "accuracy_kd": 0.0,
               "controller_step_size": 0.05, "accuracy_step_size": 1.0, "initial_alpha": 0.2}


def last_steps(run_dir: Path, count: int = 5) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return lines[-count:]


def final_name(path: str) -> str:
    """checkpoints/step-20 (the last weights) or floor/step-12 (the floor's snapshot, floor_guard.py)."""
    return "/".join(Path(path).parts[-2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", type=Path, default=REPO / "runs" / "sweep" / "summary.json",
                        help="summary.json of the fixed-alpha sweep (make sweep)")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "controller")
    parser.add_argument("--target-token-ratio", type=float, default=0.6)
    parser.add_argument("--accuracy-floor", type=float, default=0.93)
    parser.add_argument("--floor-probe-prompts", type=int, default=256, help="the floor runs' probe")
    parser.add_argument("--seed", type=int, default=None, help="the runs' seed (default: the tiny preset's)")
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    parser.add_argument("--lr", type=float, default=None, help="the runs' lr (default: the tiny preset's)")
    parser.add_argument("--pid-only", action="store_true", help="only the two runs of the default (PID) controller")
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
    target, floor = f"target-{args.target_token_ratio:g}", f"floor-{args.accuracy_floor:g}"
    # The floor run reads a probe of 256 prompts: its rollback (floor_guard.py) acts on one reading 2 points under
    # the floor, and at 93% accuracy a 64-prompt probe's standard error is 3.2 points (256: 1.6).
    token_knob = {"target_token_ratio": args.target_token_ratio}
    floor_knob = {"accuracy_floor": args.accuracy_floor, "controller_probe_prompts": args.floor_probe_prompts}
    runs = {target: token_knob, floor: floor_knob, f"{target}-dual": {**token_knob, **DUAL_ASCENT},
            f"{floor}-dual": {**floor_knob, **DUAL_ASCENT},
            f"{target}-dual-batch": {**token_knob, **DUAL_ASCENT, "controller_probe_prompts": 0}}
    if args.pid_only:
        runs = {name: knobs for name, knobs in runs.items() if "-dual" not in name}
    finals, seconds = {}, {}
    for name, knobs in runs.items():
        run_dir = args.output / name
        lr = {} if args.lr is None else {"lr": args.lr}
        seed = {} if args.seed is None else {"seed": args.seed}
        config = from_flat(TrainConfig, {**TRAIN_PRESETS["tiny"], **lr, **seed, **knobs, "model": base,
                                         "output_dir": str(run_dir), "run_name": name,
                                         "resume": (run_dir / "checkpoints").exists()})
        if (run_dir / "final_checkpoint").exists():  # trained by an earlier invocation: kept
            finals[name] = (run_dir / "final_checkpoint").read_text().strip()
            continue
        clock = time.perf_counter()
        finals[name] = str(train(config))
        seconds[name] = time.perf_counter() - clock
    sweep = from_flat(SweepConfig, {**SWEEP_PRESETS["tiny"], "output_dir": str(args.output)})
    sweep = replace(sweep, train=replace(sweep.train, model=replace(sweep.train.model, model=base)))
    names = ("base", *finals)
    eval_config = family_eval_config(sweep, (base, *finals.values()), names, args.output / "eval")
    labels = {"base": {"alpha": None}}
    for name in finals:
        steps = last_steps(args.output / name)
        alpha = steps[-1]["controller/alpha"]
        labels[name] = {"alpha": alpha, "target": args.target_token_ratio if name.startswith("target") else None,
                        "label": f"{name} (final α {alpha:.2f})"}
    summary = evaluate(eval_config, labels=labels)
    entries = family_view(summary, labels, "synthetic")
    family = json.loads(args.family.read_text())["family"] if args.family.is_file() else entries[:1]
    plot_family(family, args.docs / "controller.png", args.output / "controller_levels.png",
                others=[entry for entry in entries if entry["name"] != "base"])

    base_entry = next(entry for entry in entries if entry["name"] == "base")
    lines = ["# Ask for a budget, not an alpha: measured", "",
             "Command: `make sweep` (the fixed-alpha family), then "
             f"`{' '.join(['.venv/bin/python', 'bench/bench_controller.py', *sys.argv[1:]])}` "
             f"(2 CPU cores; {time.perf_counter() - started:.0f} s for the runs below).", "",
             "pid: the default controller; dual: plain dual ascent. It reads the training batch (temperature 1.0) or "
             "its probe (64 held-out training prompts at temperature 0.6). The test split's target is R x the base's "
             "test tokens.", "",
             "| run | controller | reads | final alpha | last 5 steps: tokens read / target "
             "| last 5 steps: accuracy read | test accuracy | test mean tokens | test tokens vs base "
             "| test tokens vs target | rollbacks | final model |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for entry in entries:
        if entry["name"] == "base":
            lines.append(f"| base | - | - | - | - | - | {100 * entry['accuracy']:.1f}% | {entry['mean_tokens']:.1f} "
                         "| 100% | - | - | - |")
            continue
        steps = last_steps(args.output / entry["name"])
        source = "probe/" if "probe/mean_tokens" in steps[-1] else ""
        tokens = sum(step[f"{source}mean_tokens"] for step in steps) / len(steps)
        accuracy = sum(step[f"{source}accuracy"] for step in steps) / len(steps)
        target = steps[-1].get("controller/target_tokens")
        ratio = entry["mean_tokens"] / base_entry["mean_tokens"]
        read = f"{tokens:.1f} / {target:.1f} ({100 * (tokens / target - 1):+.1f}%)" if target else f"{tokens:.1f} / -"
        slack = 100 * (entry["accuracy"] - args.accuracy_floor)
        versus = (f"{100 * (ratio / args.target_token_ratio - 1):+.1f}%" if entry["name"].startswith("target")
                  else f"floor {100 * args.accuracy_floor:.0f}%: {slack:+.1f} points")
        kind = "dual" if "-dual" in entry["name"] else "pid"
        lines.append(f"| {entry['name']} | {kind} | {source.rstrip('/') or 'batch'} | {entry['alpha']:.3f} | {read} | "
                     f"{100 * accuracy:.1f}% | {100 * entry['accuracy']:.1f}% | {entry['mean_tokens']:.1f} | "
                     f"{100 * ratio:.0f}% | {versus} | {steps[-1].get('controller/rollbacks', 0):.0f} | "
                     f"{final_name(finals[entry['name']])} |")
    lines += ["", "![the controller's runs beside the fixed-alpha family](controller.png)", "",
              f"Training seconds (runs trained by this invocation; the others were kept from an earlier one): "
              f"{json.dumps({name: round(value) for name, value in seconds.items()})}."]
    (args.docs / "controller.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
