"""The alpha sweep: one base model -> a family of models, one per alpha, trained as parallel Ray jobs.

    1. base      the base model: with no --model, the tiny verbose reasoner, built once on Ray and cached
    2. train     one Ray job per alpha (`jobs/train.py`), all submitted at once to the same cluster, so
                 each run shows up as its own job in the dashboard; a finished alpha is skipped on rerun
    3. evaluate  the base and every final checkpoint on the task's test split (eval_runner, resumable)
    4. report    summary.json (one entry per model), summary.md, pareto.png, tokens_by_level.png

The tiny preset is what a newcomer runs on a laptop (2 CPU cores, minutes); `--model HF_ID --task
numina_math` switches to the paper's settings (TrainConfig defaults) for a GPU cluster.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray

from ray_effreason.config import TrainConfig, from_arguments, option, to_arguments

# The newcomer's laptop run: a tiny model, short traces, a few dozen steps. The paper's values are the
# TrainConfig defaults; these are departures chosen for 2 CPU cores, not for fidelity.
TINY_PRESET: dict[str, Any] = {
    "task": "synthetic", "max_prompts": 4096, "steps": 20, "save_every": 10, "rollouts_logged": 8,
    "samples_per_prompt": 8, "prompts_per_step": 16, "temperature": 1.0, "max_new_tokens": 256,
    "max_prompt_tokens": 64, "generation_batch_size": 128, "num_verifiers": 1, "lr": 1e-4, "warmup_steps": 0,
    "kl_coef": 1e-3, "train_batch_size": 64, "micro_batch_size": 16, "zero_stage": 0, "num_learners": 1,
    "num_generators": 1, "num_cpus_per_actor": 0.5, "device": "auto",
}

EVAL_SAMPLES = {"synthetic": 1, "gsm8k": 1, "math500": 3, "aime2024": 10, "amc23": 4}
EVAL_TASK = {"numina_math": "math500"}  # training task -> the task the family is evaluated on


@dataclass(frozen=True)
class SweepConfig:
    alphas: tuple[float, ...] = option((0.0, 0.1, 0.2, 0.4), "the family; 0 is the RL control (plain correctness)")
    output_dir: str = option("runs/sweep", "where the runs, records and reports go")
    base_cache: str = option("runs/tiny_reasoner", "tiny reasoner cache (only without --model)")
    eval_task: str | None = option(None, "task to evaluate on (default: the training task; math500 for numina_math)")
    eval_task_path: str | None = option(None, "local JSONL for the eval task")
    eval_limit: int | None = option(None, "first N test problems (default: all; tiny preset: 300)")
    eval_max_new_tokens: int | None = option(None, "eval budget in tokens (default: the training budget)")
    train: TrainConfig = field(default_factory=TrainConfig)


def build_base(config: SweepConfig) -> str:
    """Step 1: the model every alpha starts from (the tiny reasoner is built in a Ray task, then cached)."""
    if config.train.model.model != "tiny":
        return str(Path(config.train.model.model).resolve()) if Path(config.train.model.model).exists() \
            else config.train.model.model
    from ray_effreason.tiny_reasoner import build_tiny_reasoner

    path = str(Path(config.base_cache).resolve())
    build = ray.remote(num_cpus=1)(build_tiny_reasoner)
    return str(ray.get(build.remote(path, num_threads=2)))


def submit_training_jobs(config: SweepConfig, base: str, client: Any) -> dict[float, str]:
    """Step 2: one `jobs/train.py` job per alpha not already finished; returns alpha -> run dir."""
    runs: dict[float, str] = {}
    script = Path(__file__).resolve().parents[1] / "jobs" / "train.py"
    runtime_env = ray.get_runtime_context().runtime_env or {}
    for alpha in config.alphas:
        run_dir = Path(config.output_dir) / f"alpha-{alpha:g}"
        runs[alpha] = str(run_dir)
        if (run_dir / "final_checkpoint").exists():
            print(f"alpha {alpha:g}: already trained ({run_dir}), skipped", flush=True)
            continue
        train = replace(config.train, output_dir=str(run_dir), run_name=f"alpha-{alpha:g}",
                        resume=(run_dir / "checkpoints").exists(),
                        model=replace(config.train.model, model=base),
                        reward=replace(config.train.reward, alpha=alpha))
        flags = " ".join(json.dumps(argument) for argument in to_arguments(train))
        if runtime_env.get("working_dir"):  # submitted with a working dir: children get the same one
            entrypoint, env = f"python jobs/train.py {flags}", dict(runtime_env)
        else:
            entrypoint, env = f"{sys.executable} {script} {flags}", None
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=env,
                                   submission_id=f"{Path(config.output_dir).name}-alpha-{alpha:g}-{int(time.time())}")
        print(f"alpha {alpha:g}: submitted job {job_id} -> {run_dir}", flush=True)
        runs[alpha] = str(run_dir)
        (run_dir).mkdir(parents=True, exist_ok=True)
        (run_dir / "job_id").write_text(job_id)
    return runs


def wait_for_jobs(runs: dict[float, str], client: Any, poll_s: float = 5.0) -> None:
    from ray.job_submission import JobStatus

    pending = {alpha: (Path(run) / "job_id").read_text() for alpha, run in runs.items()
               if not (Path(run) / "final_checkpoint").exists()}
    while pending:
        for alpha, job_id in list(pending.items()):
            status = client.get_job_status(job_id)
            if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                del pending[alpha]
                print(f"alpha {alpha:g}: job {job_id} {status}", flush=True)
                if status != JobStatus.SUCCEEDED:
                    logs = client.get_job_logs(job_id)
                    raise RuntimeError(f"training job for alpha {alpha:g} ({job_id}) {status}; rerun the sweep to "
                                       f"resume from its last checkpoint. Last log lines:\n{logs[-3000:]}")
        time.sleep(poll_s if pending else 0)


def family_summary(summary: dict[str, Any], names: dict[str, float | None], task: str) -> list[dict[str, Any]]:
    """Step 4: one entry per model, the numbers issue readers compare (alpha None = the base)."""
    entries = []
    for name, alpha in names.items():
        metrics = summary["models"][name][task]
        entries.append({
            "name": name, "alpha": alpha, "accuracy": metrics["accuracy"], "mean_tokens": metrics["mean_tokens"],
            "mean_tokens_over_min_tokens": metrics.get("tokens_over_min_tokens"),
            "truncation_rate": metrics["truncation_rate"],
            "by_level": {level: {"accuracy": values["accuracy"], "mean_tokens": values["mean_tokens"],
                                 "mean_tokens_over_min_tokens": values.get("tokens_over_min_tokens")}
                         for level, values in metrics.get("by_level", {}).items()},
        })
    return entries


def family_table(entries: list[dict[str, Any]], base: dict[str, Any]) -> str:
    lines = ["| model | alpha | accuracy | mean tokens | tokens vs base | tokens / min_tokens |",
             "|---|---|---|---|---|---|"]
    for entry in entries:
        ratio = entry["mean_tokens_over_min_tokens"]
        alpha = "base" if entry["alpha"] is None else f"{entry['alpha']:g}"
        lines.append(f"| {entry['name']} | {alpha} | "
                     f"{100 * entry['accuracy']:.1f}% | {entry['mean_tokens']:.1f} | "
                     f"{100 * entry['mean_tokens'] / base['mean_tokens']:.0f}% | "
                     f"{'-' if ratio is None else format(ratio, '.2f')} |")
    return "\n".join(lines)


def run_sweep(config: SweepConfig, dashboard_url: str) -> dict[str, Any]:
    """Steps 1-4; `dashboard_url` (host:port, from ray.init()) is where the alpha jobs are submitted."""
    from ray_effreason.eval_runner import EvalConfig, evaluate

    output_dir = Path(config.output_dir).resolve()
    config = replace(config, output_dir=str(output_dir))
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # ------------------------------------------------------------------ 1. base
    base = build_base(config)
    print(f"base model: {base}", flush=True)
    # ------------------------------------------------------------------ 2. train
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(f"http://{dashboard_url}")
    runs = submit_training_jobs(config, base, client)
    wait_for_jobs(runs, client)
    trained = time.perf_counter()
    # ------------------------------------------------------------------ 3. evaluate
    finals = {alpha: (Path(run) / "final_checkpoint").read_text().strip() for alpha, run in runs.items()}
    task = config.eval_task or EVAL_TASK.get(config.train.task, config.train.task)
    tiny = config.train.task == "synthetic"
    limit = config.eval_limit if config.eval_limit is not None else (300 if tiny else None)
    models = (base, *finals.values())
    names = ("base", *(f"alpha-{alpha:g}" for alpha in finals))
    eval_config = EvalConfig(
        models=models, names=names, tasks=(task,), task_path=config.eval_task_path,
        output_dir=str(output_dir / "eval"), samples={task: EVAL_SAMPLES.get(task, 1)}, limit=limit,
        temperature=0.6, max_new_tokens=config.eval_max_new_tokens or config.train.rollout.max_new_tokens,
        num_generators=config.train.rollout.num_generators, num_verifiers=config.train.reward.num_verifiers,
        generation_batch_size=config.train.rollout.generation_batch_size, base_model="base",
        device=config.train.model.device)
    summary = evaluate(eval_config)
    # ------------------------------------------------------------------ 4. report
    entries = family_summary(summary, dict(zip(names, (None, *finals))), task)
    table = family_table(entries, entries[0])
    result = {"task": task, "base_model": base, "models": entries,
              "seconds": {"total": time.perf_counter() - started, "train": trained - started},
              "eval_dir": str(output_dir / "eval")}
    (output_dir / "summary.json").write_text(json.dumps(result, indent=2))
    (output_dir / "summary.md").write_text(table + "\n")
    from ray_effreason.report import plot_family

    plot_family(entries, output_dir / "pareto.png", output_dir / "tokens_by_level.png")
    print(table, flush=True)
    print(f"\nsummary: {output_dir / 'summary.json'}\ntable: {output_dir / 'summary.md'}\n"
          f"plots: {output_dir / 'pareto.png'}, {output_dir / 'tokens_by_level.png'}", flush=True)
    return result


def config_from_flags(given: dict[str, Any], preset_name: str | None = None) -> TrainConfig:
    """The tiny preset without --model, the paper's defaults with it (or as --preset says); given flags win."""
    if preset_name is None:
        preset_name = "tiny" if given.get("model", "tiny") == "tiny" else "paper"
    presets = {"tiny": dict(TINY_PRESET, model="tiny"), "paper": {}}
    if preset_name not in presets:
        raise ValueError(f"--preset {preset_name!r}; choose one of {list(presets)}")
    preset = presets[preset_name]
    return from_arguments(TrainConfig, {"output_dir": "runs/sweep", **preset, **given})
