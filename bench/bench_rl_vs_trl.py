"""RL step throughput on one CPU node: ray_effreason's driver vs TRL's RLOOTrainer, same everything.

    python bench/bench_rl_vs_trl.py --measured-steps 5 --repeats 3   # ~5 min on 2 cores (+ a one-time model build)

Both systems are driven by one TrainConfig (`BENCH`, below, overridable by every jobs/train.py flag; TRL
gets it through `trl_adapter.trl_arguments`) and train the same tiny reasoner
(`tiny_reasoner.build_tiny_reasoner`, a Qwen2 of under 1M
parameters SFT-ed to write verbose traces, cached under --model-dir; the first run builds it) on the same
synthetic prompts, tokenized identically, in the same order (our driver's seeded order; TRL gets it
pre-ordered, shuffle off), with:

- B prompts per rollout step, G samples per prompt, max_new_tokens, temperature 1.0, top_p 1.0, no top-k;
- the same reward: the task's grade (a truncated sample is never correct), then our pure
  `rewards.length_penalized_rewards` on the (B, G) group (alpha 0.2), RLOO advantages;
- the same update shape: B*G samples -> B*G / train_batch_size AdamW steps (betas 0.9/0.95, no decay,
  grad clip 1.0, linear warmup then constant), micro-batches of micro_batch_size, one PPO epoch,
  clip 0.2, a frozen reference model and a k1 KL of kl_coef in the reward, fp32.

What still differs (algorithmic, not speed settings; see docs/benchmarks.md):
- TRL's RLOO loss is sequence-level (ratio of summed log-probs, mean over sequences) and subtracts the
  summed k1 KL from the sequence reward; ours is token-level PPO-clip (seq-mean-token-mean) with the
  k1 KL added per token (the paper's OpenRLHF setup). Same number of forward/backward passes.
- Ours samples with a seeded Gumbel-max logits processor (per-sample seeds); TRL with `do_sample`.
- Ours runs generation, grading (2 verifier actors) and the DeepSpeed learner as Ray actors and
  broadcasts weights after each update (gloo); TRL runs everything in one process on one model.

Measured per rollout step after --warmup steps: wall time (steps/s), generated tokens per wall second
and per generation second, generation time per decode step (batched decoding runs until the longest
sample ends), and the time split (ours: metrics.jsonl time/generate, grade, update, sync plus "other" =
the rest of the step; TRL: the same phases timed around its methods, its "other" folded into update).
Systems alternate within each repeat, so drifting load from other jobs hits both; the table gives
the median and [min-max] over repeats. Both systems run with OMP_WAIT_POLICY=PASSIVE and at the same
CPU priority by default (--omp-wait-policy, --ray-worker-niceness; docs/benchmarks.md says why).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/trl_adapter.py beside this file

from trl_adapter import PHASES, run_trl  # noqa: E402

from ray_effreason.cli import config_parser, parse_config  # noqa: E402
from ray_effreason.config import TrainConfig  # noqa: E402
from ray_effreason.config_tree import flat_fields  # noqa: E402

# Everything both systems share (and what a reader needs to reproduce a row), as TrainConfig flat names.
BENCH: dict[str, Any] = {
    "task": "synthetic", "device": "cpu", "prompts_per_step": 8, "samples_per_prompt": 8,  # B, G
    "max_new_tokens": 256,  # the tiny reasoner's verbose traces run ~15-200 tokens
    "max_prompt_tokens": 128, "temperature": 1.0, "top_p": 1.0, "generator_backend": "transformers",
    "train_batch_size": 32,  # samples per optimizer step: B*G/32 = 2 optimizer steps, as the paper
    "micro_batch_size": 8, "lr": 1e-5, "warmup_steps": 6, "weight_decay": 0.0, "grad_clip": 1.0,
    "kl_coef": 1e-3, "kl_estimator": "k1", "clip_low": 0.2, "advantage": "rloo", "alpha": 0.2, "seed": 42,
    "zero_stage": 0, "num_learners": 1, "num_generators": 1, "num_verifiers": 2,
    "save_every": 10**6, "keep_checkpoints": 1, "run_name": "bench-ours",
}


# ---------------------------------------------------------------- shared inputs


def model_dir(path: Path, untrained: bool = False) -> Path:
    """The trained tiny reasoner (built once, cached by config hash: minutes on 2 cores).

    `untrained`: a freshly initialized one instead (no build; it never emits EOS, so every sample runs
    to max_new_tokens: a smoke test of the bench, not a realistic length mix).
    """
    from ray_effreason.tiny_reasoner import build_model, build_tiny_reasoner, build_tokenizer

    if untrained:
        path = path.with_name(path.name + "-untrained")
        tokenizer = build_tokenizer()
        build_model(tokenizer, seed=0).save_pretrained(path)
        tokenizer.save_pretrained(path)
        return path
    start = time.perf_counter()
    built = build_tiny_reasoner(path, log_every=100)
    if time.perf_counter() - start > 5:
        print(f"built the tiny reasoner in {time.perf_counter() - start:.0f}s -> {built}", flush=True)
    return built


def run_config(base: TrainConfig, model: Path, total_steps: int, threads: int, output_dir: Path) -> TrainConfig:
    """The bench config of one run: this model, these steps, just enough prompts, all batches in one call."""
    rollout = base.rollout
    samples = rollout.prompts_per_step * rollout.samples_per_prompt
    return replace(base, output_dir=str(output_dir), steps=total_steps,
                   max_prompts=rollout.prompts_per_step * total_steps,
                   model=replace(base.model, model=str(model)), rollout=replace(rollout, generation_batch_size=samples),
                   learner=replace(base.learner, num_cpus_per_actor=float(threads)))


def prompt_schedule(config: TrainConfig) -> list[Any]:
    """The examples our driver visits, step by step (driver.prompt_indices): TRL gets this exact list."""
    from ray_effreason.driver import prompt_indices
    from ray_effreason.tasks import load_task

    examples = load_task(config.task, split="train").examples[: config.max_prompts]
    return [examples[index] for step in range(config.num_steps)
            for index in prompt_indices(len(examples), config.rollout.prompts_per_step, step, config.seed)]


# ---------------------------------------------------------------- ours: driver.train on Ray actors


def run_ours(config: TrainConfig, threads: int, output_dir: Path) -> tuple[list[dict[str, float]], float]:
    """One driver run: per-step records from metrics.jsonl (wall = gap between step records), startup seconds.

    Startup = ray.init + actors (DeepSpeed init, model loads) + weight-sync group, up to the first step.
    """
    import shutil

    import ray

    from ray_effreason.driver import train

    shutil.rmtree(output_dir, ignore_errors=True)
    # Generation, update and sync run one after the other, so the generator and the learner each get
    # all the node's cores (num_cpus_per_actor = threads); Ray's CPU count is logical: learner +
    # generator + verifiers add up to 2 * threads + 0.5, more than the node has, on purpose.
    for attempt in range(3):
        began = time.time()
        ray.init(address="local", num_cpus=2 * threads + 1, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {key: os.environ[key] for key in ("OMP_WAIT_POLICY",) if key in os.environ}})
        try:
            train(config)
            break
        except (ray.exceptions.ActorDiedError, ray.exceptions.RaySystemError) as error:
            # On a shared machine another job's `ray stop --force` kills every raylet on the node,
            # ours included; that is not a property of the system under test, so run it again.
            if attempt == 2:
                raise
            print(f"ours: Ray failed ({type(error).__name__}), running again", flush=True)
            shutil.rmtree(output_dir, ignore_errors=True)
        finally:
            ray.shutdown()
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines() if line]
    first = records[0]
    startup = first["time"] - began - sum(first[f"time/{phase}"] for phase in PHASES[:-1])
    samples = config.rollout.prompts_per_step * config.rollout.samples_per_prompt
    steps, previous = [], None
    for record in records:
        if previous is not None:
            wall = record["time"] - previous
            phases = {phase: record[f"time/{phase}"] for phase in PHASES[:-1]}
            phases["other"] = wall - sum(phases.values())
            steps.append({"wall": wall, "tokens": record["mean_tokens"] * samples, "max_tokens": record["max_tokens"],
                          "accuracy": record["accuracy"], **phases})
        previous = record["time"]
    return steps, startup  # the first step has no previous record: it is warm-up by construction


# ---------------------------------------------------------------- summary


def summarize(steps: list[dict[str, float]], warmup: int) -> dict[str, float]:
    """Throughput over the measured steps (after `warmup` more are dropped) and mean seconds per phase."""
    measured = steps[warmup:]
    wall = sum(step["wall"] for step in measured)
    tokens = sum(step["tokens"] for step in measured)
    summary = {"steps": len(measured), "steps_per_second": len(measured) / wall, "tokens_per_second": tokens / wall,
               "generation_tokens_per_second": tokens / sum(step["generate"] for step in measured),
               "tokens_per_step": tokens / len(measured),
               # batched decoding runs until the longest sample ends: seconds per decode step compares
               # generation speed independently of which samples happened to be long
               "generate_ms_per_decode_step": 1000 * sum(step["generate"] for step in measured)
               / sum(step["max_tokens"] for step in measured)}
    summary |= {f"seconds/{phase}": sum(step[phase] for step in measured) / len(measured) for phase in PHASES}
    summary["seconds/step"] = wall / len(measured)
    if "logprobs" in measured[0]:  # TRL: the part of update spent on old/ref log-probs
        summary["seconds/update:old_ref_logprobs"] = sum(step["logprobs"] for step in measured) / len(measured)
    return summary


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} [{min(values):.3g}-{max(values):.3g}]"


def report(runs: dict[str, list[dict[str, float]]]) -> str:
    """A markdown table: median [min-max] over repeats, and the ours/TRL ratio of medians."""
    keys = ["steps_per_second", "tokens_per_second", "generation_tokens_per_second", "tokens_per_step",
            "generate_ms_per_decode_step",
            "seconds/step", *(f"seconds/{phase}" for phase in PHASES), "seconds/update:old_ref_logprobs",
            "startup_seconds"]
    systems = list(runs)
    both = set(systems) == {"ours", "trl"}
    columns = ["metric", *systems] + (["ours / TRL"] if both else [])
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for key in keys:
        cells = [spread([run[key] for run in runs[system]]) if key in runs[system][0] else "-" for system in systems]
        if both:
            trl = statistics.median(run.get(key, 0.0) for run in runs["trl"])
            cells.append(f"{statistics.median(run[key] for run in runs['ours']) / trl:.2f}"
                         if trl and key in runs["ours"][0] else "")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_info(model: Path) -> dict[str, Any]:
    """What the tiny reasoner was (its build changes as the project tunes it): size, accuracy, length."""
    info_path = model / "build_info.json"
    if not info_path.is_file():
        return {"path": str(model), "untrained": True}
    info = json.loads(info_path.read_text())
    return {"path": str(model), "config_hash": info.get("config_hash"), "num_parameters": info.get("num_parameters"),
            "eval_accuracy": info["eval"]["accuracy"], "eval_mean_tokens": info["eval"]["mean_tokens"]}


def versions() -> dict[str, str]:
    import importlib.metadata as metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:  # trl is an extra (pip install -e .[bench])
            return "not installed"

    return {name: version(name) for name in ("torch", "transformers", "trl", "ray", "deepspeed", "vllm")}


def parse_arguments(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """(the shared TrainConfig: BENCH, overridden by any jobs/train.py flag; the bench's own options)."""
    presets = {"bench": BENCH}
    parser = config_parser(TrainConfig, __doc__, presets)
    bench = parser.add_argument_group("bench")
    bench.add_argument("--measured-steps", type=int, default=5, help="measured rollout steps per run (after warm-up)")
    bench.add_argument("--warmup", type=int, default=1, help="rollout steps dropped at the start of each run")
    bench.add_argument("--repeats", type=int, default=3, help="runs per system, alternating ours/TRL")
    bench.add_argument("--systems", default="ours,trl", help="comma-separated: ours, trl")
    bench.add_argument("--threads", type=int, default=2, help="torch threads of every computing process (the cores)")
    bench.add_argument("--ours-threads", type=int, default=None,
                       help="ours only: torch threads of each generator and learner (default --threads). With "
                            "--async-steps 1 the two run at once, so 1 gives each its own core of a 2-core node")
    bench.add_argument("--trl-threads", type=int, default=None, help="TRL only: torch threads (default --threads)")
    bench.add_argument("--model-dir", type=Path, default=Path("runs/bench/tiny_reasoner"),
                       help="tiny reasoner build (cached; built on first use)")
    bench.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE", "inherit"], default="PASSIVE",
                       help="OMP_WAIT_POLICY for every process (inherit: leave the environment as it is)")
    bench.add_argument("--ray-worker-niceness", type=int, default=0,
                       help="RAY_worker_niceness for our actors (Ray's default is 15; TRL's process runs at 0)")
    bench.add_argument("--untrained", action="store_true", help="smoke test on an untrained model (no build)")
    bench.add_argument("--output", type=Path, default=Path("runs/bench/rl_vs_trl"), help="run dirs and results.json")
    config, extras = parse_config(parser, TrainConfig, argv, presets, default_preset="bench")
    args = argparse.Namespace(**extras)
    if args.warmup < 1:
        parser.error(f"--warmup must be >= 1 (the first step includes one-time costs), got {args.warmup}")
    unknown = [system for system in args.systems.split(",") if system not in ("ours", "trl")]
    if unknown:
        parser.error(f"unknown systems {unknown}; valid: ['ours', 'trl']")
    return config, args


def main() -> None:
    base, args = parse_arguments()
    if args.omp_wait_policy != "inherit" and os.environ.get("OMP_WAIT_POLICY") != args.omp_wait_policy:
        # libgomp's default wait spins idle OpenMP threads; on a node shared with other jobs a 2-thread
        # forward/backward of the tiny model then takes seconds instead of ~50 ms (measured here: 20-100x).
        # libgomp reads the variable once, when it loads with torch, and the config modules imported above have
        # loaded it: this process (where TRL runs) starts again with it set. Ray workers get it via runtime_env.
        # (Until 2026-12-07 it was only set here, so TRL kept libgomp's default while our actors waited passively.)
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
        os.execv(sys.executable, [sys.executable, *sys.argv])
    # Ray starts its workers (our generator, learner, verifiers) at nice 15; next to other jobs on a shared
    # node they would then get a fraction of the CPU that TRL's nice-0 process gets. Read when Ray starts.
    os.environ["RAY_worker_niceness"] = str(args.ray_worker_niceness)
    systems = args.systems.split(",")
    threads_of = {"ours": args.ours_threads or args.threads, "trl": args.trl_threads or args.threads}
    model = model_dir(args.model_dir, args.untrained)
    # ours: the driver's first step record only starts the clock; TRL: run_trl drops its first step.
    total_steps = args.warmup + args.measured_steps
    results: dict[str, list[dict[str, float]]] = {system: [] for system in systems}
    per_step: dict[str, list[list[dict[str, float]]]] = {system: [] for system in systems}
    start = time.perf_counter()
    for repeat in range(args.repeats):
        for system in systems:
            began = time.perf_counter()
            output_dir = args.output / f"{system}-{repeat}"
            threads = threads_of[system]
            config = run_config(base, model, total_steps, threads, output_dir)
            if system == "ours":
                steps, startup = run_ours(config, threads, output_dir)
            else:
                steps, startup = run_trl(config, prompt_schedule(config), threads, output_dir)
            summary = summarize(steps, args.warmup - 1)
            summary["startup_seconds"] = startup
            summary["run_seconds"] = time.perf_counter() - began
            results[system].append(summary)
            per_step[system].append(steps)
            print(f"[{system} #{repeat}] " + json.dumps({k: round(v, 3) for k, v in summary.items()}), flush=True)
    environment = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                   "RAY_worker_niceness": args.ray_worker_niceness, "torch_threads": threads_of}
    settings = flat_fields(base)
    print(f"\nsettings: {json.dumps(settings)}\nmodel: {json.dumps(model_info(model))}\n"
          f"environment: {json.dumps(environment)}\nversions: {json.dumps(versions())}\n"
          f"measured steps per run: {args.measured_steps} (after {args.warmup} warm-up), repeats: {args.repeats}, "
          f"total {time.perf_counter() - start:.0f}s\n")
    print(report(results))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(
        {"settings": settings, "steps": args.measured_steps, "warmup": args.warmup, "environment": environment,
         "model": model_info(model), "versions": versions(), "summaries": results, "per_step": per_step}, indent=1))


if __name__ == "__main__":
    main()
