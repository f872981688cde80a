"""The alpha sweep: one base model -> a family of models, one per alpha, trained as parallel Ray jobs.

    1. base      the base model: with no --model, the tiny verbose reasoner, built once on Ray and cached
    2. train     one Ray job per alpha (`jobs/train.py`), all submitted at once to the same cluster, so
                 each run shows up as its own job in the dashboard; a finished alpha is skipped on rerun,
                 a failed job resubmitted with --resume (--job-attempts). With --targets R,...: one job
                 per token budget instead (`target-R`, alpha driven by alpha_controller.py)
    3. evaluate  the base and every final checkpoint on the task's test split (eval_runner, resumable)
       3b        with --forced-budgets: the base again, its answer forced at each thinking budget
    4. report    summary.json (the evaluation's summary, plus "family": one entry per model, the same
                 metric names; "family_seed_means" with --seeds, "forced_budgets"), summary.md, pareto.png,
                 tokens_by_level.png, thinking_pays.png

The tiny preset is what a newcomer runs on a laptop (2 CPU cores, minutes); `--model HF_ID --task
numina_math` switches to the paper's settings (TrainConfig defaults) for a GPU cluster. Presets: presets.py.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import ray

from ray_effreason.cli import to_arguments
from ray_effreason.config import EvalConfig, SweepConfig, TrainConfig
from ray_effreason.config_tree import from_flat
from ray_effreason.eval_actors import EvalActorCache, generation_budget
from ray_effreason.tasks import task_class


def base_cache(config: SweepConfig) -> Path:
    """The tiny reasoner's cache: --base-cache, else `tiny_reasoner` beside the sweep's output dir.

    Never relative to the working directory: a job submitted with a working dir runs in an uploaded copy
    of the repo that goes away with the head (runs/sweep -> runs/tiny_reasoner, as `make sweep` passes).
    """
    if config.base_cache is not None:
        return Path(config.base_cache).resolve()
    return Path(config.output_dir).resolve().parent / "tiny_reasoner"


def build_base(config: SweepConfig) -> str:
    """Step 1: the model every alpha starts from (the tiny reasoner is built in a Ray task, then cached)."""
    if config.train.model.model != "tiny":
        return str(Path(config.train.model.model).resolve()) if Path(config.train.model.model).exists() \
            else config.train.model.model
    from ray_effreason.tiny_reasoner import build_tiny_reasoner

    path = str(base_cache(config))
    build = ray.remote(num_cpus=1)(build_tiny_reasoner)
    return str(ray.get(build.remote(path, num_threads=2)))


@dataclass(frozen=True)
class Member:
    """One model of the family: its name, its labels in summary.json, its flags over the sweep's training config."""

    name: str
    labels: dict[str, Any]
    overrides: dict[str, Any]


def family_members(config: SweepConfig) -> list[Member]:
    """By alpha (`alpha-A`), or, with --targets, by token budget (`target-R`: alpha found by the controller)."""
    if config.targets:
        return [Member(f"target-{ratio:g}", {"target": ratio}, {"target_token_ratio": ratio})
                for ratio in config.targets]
    if config.seeds:  # the same family under several seeds (issue 11: how stable is the RL?)
        pairs = [{"alpha": alpha, "seed": seed} for alpha in config.alphas for seed in config.seeds]
        members = [Member(f"alpha-{pair['alpha']:g}-seed-{pair['seed']}", pair, pair) for pair in pairs]
    else:
        members = [Member(f"alpha-{alpha:g}", {"alpha": alpha}, {"alpha": alpha}) for alpha in config.alphas]
    # The alpha-0 control under each asked-for loss aggregation (issue 11; PAPER.md §9: the length-unbiased
    # aggregation removed the alpha-0 shortening on 7B).
    return members + [Member(f"alpha-0-{name}", {"alpha": 0.0, "aggregation": name},
                             {"alpha": 0.0, "aggregation": name}) for name in config.control_aggregations]


def submit_job(config: SweepConfig, member: Member, base: str, client: Any) -> str:
    """One `jobs/train.py` job for `member` (resuming its last checkpoint when it has one); returns the job id."""
    run_dir = Path(config.output_dir) / member.name
    train = from_flat(TrainConfig, {**member.overrides, "output_dir": str(run_dir), "run_name": member.name,
                                    "resume": (run_dir / "checkpoints").exists(), "model": base},
                      base=config.train, where=f"family member {member.name}")
    flags = " ".join(json.dumps(argument) for argument in to_arguments(train))
    runtime_env = ray.get_runtime_context().runtime_env or {}
    if runtime_env.get("working_dir"):  # submitted with a working dir: children get the same one
        entrypoint, env = f"python jobs/train.py {flags}", dict(runtime_env)
    else:
        script = Path(__file__).resolve().parents[1] / "jobs" / "train.py"
        entrypoint, env = f"{sys.executable} {script} {flags}", None
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=env,
                               submission_id=f"{Path(config.output_dir).name}-{member.name}-{uuid.uuid4().hex[:8]}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "job_id").write_text(job_id)
    print(f"{member.name}: submitted job {job_id} -> {run_dir}" + (" (resuming)" if train.resume else ""), flush=True)
    return job_id


def train_family(config: SweepConfig, members: list[Member], base: str, client: Any,
                 others: dict[str, Callable[[], str]] | None = None, poll_s: float = 2.0) -> None:
    """Step 2: every unfinished member as its own job, at most --max-parallel-jobs at once (none: all, Ray
    queues what does not fit); a failed job is resubmitted with --resume (at most `job_attempts` runs per member),
    so a lost node costs the steps since the last checkpoint. `others`: more jobs for the same queue, name ->
    a function that submits it and returns its id (the comparison's SFT / DPO jobs), started first."""
    submitters = dict(others or {})
    for member in untrained(members, Path(config.output_dir)):
        submitters[member.name] = functools.partial(submit_job, config, member, base, client)
    run_jobs(client, submitters, config.job_attempts, config.max_parallel_jobs, poll_s)


def untrained(members: list[Member], output_dir: Path) -> list[Member]:
    """The members without DIR/<member>/final_checkpoint; a trained one is said to be skipped (a rerun resumes)."""
    pending = []
    for member in members:
        if (output_dir / member.name / "final_checkpoint").exists():
            print(f"{member.name}: already trained, skipped", flush=True)
        else:
            pending.append(member)
    return pending


def run_jobs(client: Any, submitters: dict[str, Callable[[], str]], attempts: int, max_running: int | None,
             poll_s: float = 2.0) -> None:
    """Until every job of `submitters` (name -> submit, which returns the job id) has succeeded: in order, at most
    `max_running` at once (None: all at once); a failed one is submitted again (a training job resumes from its
    last checkpoint), at most `attempts` runs per name, then an error with the job's last log lines.

    Why a limit: every job is a driver process plus its actors, each importing torch; on a 2-core laptop, 18 jobs
    started together spent minutes contending before any of them finished a step (docs/compare.md)."""
    from ray.job_submission import JobStatus

    queued, running = list(submitters), {}
    while queued or running:
        while queued and (max_running is None or len(running) < max_running):
            name = queued.pop(0)
            running[name] = (submitters[name](), 1)
        for name, (job_id, attempt) in list(running.items()):
            status = client.get_job_status(job_id)
            if status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                continue
            print(f"{name}: job {job_id} {status}", flush=True)
            del running[name]
            if status == JobStatus.SUCCEEDED:
                continue
            logs = client.get_job_logs(job_id)
            if attempt >= attempts:
                raise RuntimeError(f"job for {name} ({job_id}) {status} on attempt {attempt} of {attempts}; rerun to "
                                   f"resume (a trained model is skipped). Last log lines:\n{logs[-3000:]}")
            print(f"{name}: attempt {attempt} {status}, submitting it again. Last log lines:\n{logs[-1000:]}",
                  flush=True)
            running[name] = (submitters[name](), attempt + 1)
        time.sleep(poll_s if running else 0)


def final_alpha(run_dir: Path) -> float | None:
    """The alpha a budget-trained member ended with (the controller's, from its last metrics record)."""
    lines = [line for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return json.loads(lines[-1]).get("controller/alpha") if lines else None


def family_view(summary: dict[str, Any], labels: dict[str, dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """Step 4: one entry per model, a view over summary["models"] with the same metric names, and each model's
    labels (alpha; target and the final alpha for a budget family; alpha None = the base)."""
    names = ("accuracy", "mean_tokens", "mean_tokens_sem", "tokens_over_min_tokens", "mean_min_tokens",
             "truncation_rate")
    base = summary["models"]["base"][task] if "base" in summary["models"] else None

    def view(metrics: dict[str, Any], base_metrics: dict[str, Any] | None) -> dict[str, Any]:
        # tokens_vs_base: this model's mean tokens over the base's on the same problems (1 - the token cut)
        ratio = metrics["mean_tokens"] / base_metrics["mean_tokens"] if base_metrics else None
        return {**{key: metrics.get(key) for key in names}, "tokens_vs_base": ratio, "n_samples": metrics["n_samples"]}

    entries = []
    for name, label in labels.items():
        metrics = summary["models"][name][task]
        entries.append({"name": name, **label, "task": task, **view(metrics, base),
                        "by_level": {level: view(values, base["by_level"].get(level) if base else None)
                                     for level, values in metrics.get("by_level", {}).items()}})
    return entries


def seed_means(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per alpha of a family trained under several seeds: mean and spread (sample std, 0 for one seed) of the
    accuracy and the mean tokens over its seeds' models; [] for a family without seeds.

    >>> rows = seed_means([{"alpha": 0.2, "seed": s, "accuracy": a, "mean_tokens": t, "n_samples": 300}
    ...                    for s, a, t in ((0, 0.9, 40.0), (1, 0.8, 44.0))])
    >>> [(r["alpha"], r["seeds"], round(r["accuracy"], 3), round(r["accuracy_std"], 4), r["mean_tokens"]) for r in rows]
    [(0.2, [0, 1], 0.85, 0.0707, 42.0)]
    """
    import statistics

    groups: dict[float, list[dict[str, Any]]] = {}
    for entry in entries:
        if entry.get("seed") is not None and entry.get("aggregation") is None:
            groups.setdefault(entry["alpha"], []).append(entry)

    def spread(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else 0.0

    rows = []
    for alpha, group in sorted(groups.items()):
        accuracy, tokens = [e["accuracy"] for e in group], [e["mean_tokens"] for e in group]
        rows.append({"alpha": alpha, "seeds": [e["seed"] for e in group], "accuracy": statistics.fmean(accuracy),
                     "accuracy_std": spread(accuracy), "mean_tokens": statistics.fmean(tokens),
                     "mean_tokens_std": spread(tokens), "n_samples": sum(e["n_samples"] for e in group)})
    return rows


def seed_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| alpha | seeds | accuracy, mean ± std over seeds | mean tokens, mean ± std |", "|---|---|---|---|"]
    lines += [f"| {row['alpha']:g} | {','.join(map(str, row['seeds']))} | {100 * row['accuracy']:.1f}% ± "
              f"{100 * row['accuracy_std']:.1f} | {row['mean_tokens']:.1f} ± {row['mean_tokens_std']:.1f} |"
              for row in rows]
    return "\n".join(lines)


def forced_answer_config(eval_config: EvalConfig, model: str, name: str, budget: int, output_dir: Path) -> EvalConfig:
    """`model` on `eval_config`'s problems with its thinking cut at `budget` tokens and the answer forced
    (EvalConfig.force_answer): the generation-cutoff baseline of the comparison and the sweep's thinking curve."""
    return replace(eval_config, models=(model,), names=(name,), base_model=name, force_answer=True,
                   output_dir=str(output_dir), rollout=replace(eval_config.rollout, max_new_tokens=budget))


def forced_budget_rows(config: SweepConfig, eval_config: EvalConfig, base: str, uncut: dict[str, Any],
                       output_dir: Path, actors: EvalActorCache | None = None) -> list[dict[str, Any]]:
    """Step 3b: the base evaluated at each --forced-budgets budget, plus `uncut` (its plain evaluation) as the last
    row: budget, accuracy, n_samples, mean_tokens (a forced answer's continuation included). `actors`: the
    cache to evaluate on (step 3's actors, when they fit)."""
    from ray_effreason.eval_runner import evaluate

    task = eval_config.tasks[0]
    rows = []
    for budget in config.forced_budgets:
        name = f"base-forced-{budget}"
        summary = evaluate(forced_answer_config(eval_config, base, name, budget, output_dir / name), actors=actors)
        metrics = summary["models"][name][task]
        rows.append({"budget": budget, "accuracy": metrics["accuracy"], "n_samples": metrics["n_samples"],
                     "mean_tokens": metrics["mean_tokens"]})
    return rows + [{"budget": eval_config.rollout.max_new_tokens, "uncut": True, "accuracy": uncut["accuracy"],
                    "n_samples": uncut["n_samples"], "mean_tokens": uncut["mean_tokens"]}]


def forced_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| thinking budget (tokens) | accuracy | mean tokens |", "|---|---|---|"]
    lines += [f"| {'uncut' if row.get('uncut') else row['budget']} | {100 * row['accuracy']:.1f}% | "
              f"{row['mean_tokens']:.1f} |" for row in rows]
    return "\n".join(lines)


def family_table(entries: list[dict[str, Any]], base: dict[str, Any]) -> str:
    lines = ["| model | alpha | accuracy | mean tokens | tokens vs base | tokens / min_tokens |",
             "|---|---|---|---|---|---|"]
    for entry in entries:
        ratio = entry["tokens_over_min_tokens"]
        alpha = "base" if entry["name"] == "base" else "-" if entry["alpha"] is None else f"{entry['alpha']:.3g}"
        lines.append(f"| {entry['name']} | {alpha} | "
                     f"{100 * entry['accuracy']:.1f}% | {entry['mean_tokens']:.1f} | "
                     f"{100 * entry['mean_tokens'] / base['mean_tokens']:.0f}% | "
                     f"{'-' if ratio is None else format(ratio, '.2f')} |")
    levels = sorted({level for entry in entries for level in entry["by_level"]}, key=int)
    if levels:  # adaptive compute: where each model cuts its tokens
        lines += ["", "Per level: accuracy / mean tokens / tokens vs the base on that level", "",
                  "| model | " + " | ".join(f"L{level}" for level in levels) + " |",
                  "|---|" + "---|" * len(levels)]
        for entry in entries:
            cells = []
            for level in levels:
                values = entry["by_level"].get(level)
                cells.append("-" if values is None else f"{100 * values['accuracy']:.0f}% / {values['mean_tokens']:.1f}"
                             f" / {100 * (values['tokens_vs_base'] or float('nan')):.0f}%")
            lines.append(f"| {entry['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_sweep(config: SweepConfig, dashboard_url: str) -> dict[str, Any]:
    """Steps 1-4; `dashboard_url` (host:port, from ray.init()) is where the alpha jobs are submitted."""
    from ray_effreason.eval_runner import evaluate
    from ray_effreason.loggers import check_available, flat_scalars, log_summary

    check_available(config.train.loggers)  # before the base is built and the jobs are submitted
    output_dir = Path(config.output_dir).resolve()
    config = replace(config, output_dir=str(output_dir))
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # ------------------------------------------------------------------ 1. base
    base = build_base(config)
    print(f"base model: {base}", flush=True)
    # ------------------------------------------------------------------ 2. train
    from ray.job_submission import JobSubmissionClient

    members = family_members(config)
    train_family(config, members, base, JobSubmissionClient(f"http://{dashboard_url}"))
    trained = time.perf_counter()
    # ------------------------------------------------------------------ 3. evaluate
    run_dirs = {member.name: Path(config.output_dir) / member.name for member in members}
    finals = {name: (run_dir / "final_checkpoint").read_text().strip() for name, run_dir in run_dirs.items()}
    labels: dict[str, dict[str, Any]] = {"base": {"alpha": None}}
    for member in members:
        labels[member.name] = dict(member.labels)
        if "target" in member.labels:
            labels[member.name]["alpha"] = final_alpha(run_dirs[member.name])
    names = ("base", *finals)
    eval_config = family_eval_config(config, (base, *finals.values()), names, output_dir / "eval")
    room = max((generation_budget(forced_answer_config(eval_config, base, "", budget, output_dir))
                for budget in config.forced_budgets), default=0)  # 3b's forced answers fit 3's actors
    with EvalActorCache(room) as actors:  # one set of evaluation actors for 3 and 3b
        summary = evaluate(eval_config, labels=labels, loggers=config.train.loggers, actors=actors)
        task = eval_config.tasks[0]
        uncut = summary["models"]["base"][task]
        forced = forced_budget_rows(config, eval_config, base, uncut, output_dir / "eval-forced", actors) \
            if config.forced_budgets else []
    # ------------------------------------------------------------------ 4. report
    entries = family_view(summary, labels, task)
    means = seed_means(entries)
    table = family_table(entries, entries[0])
    if means:
        table += "\n\nOver seeds:\n\n" + seed_table(means)
    if forced:
        table += "\n\nThe base with its answer forced at a thinking budget:\n\n" + forced_table(forced)
    if len(eval_config.tasks) > 1:  # the paper's table: every task, both normalizations (PAPER.md §6.1)
        from ray_effreason.report import markdown_table

        table += f"\n\n(the family table above is {task}; every task:)\n\n" + markdown_table(summary)
    result = {**summary, "family": entries, "family_task": task, "base_model_path": base,
              **({"family_seed_means": means} if means else {}), **({"forced_budgets": forced} if forced else {}),
              "seconds": {"total": time.perf_counter() - started, "train": trained - started},
              "eval_dir": str(output_dir / "eval")}
    (output_dir / "summary.json").write_text(json.dumps(result, indent=2, allow_nan=False))
    (output_dir / "summary.md").write_text(table + "\n")
    log_summary(config.train.loggers, output_dir, "family", flat_scalars(
        {entry["name"]: entry for entry in entries}, "family/", skip=("by_level",)), table)
    from ray_effreason.family_plots import plot_family, plot_forced_budgets

    plots = [output_dir / "pareto.png", output_dir / "tokens_by_level.png"]
    plot_family(entries, *plots, seed_means=means)
    if forced:
        plots.append(plot_forced_budgets(forced, output_dir / "thinking_pays.png"))
    print(table, flush=True)
    print(f"\nsummary: {output_dir / 'summary.json'}\ntable: {output_dir / 'summary.md'}\n"
          f"plots: {', '.join(map(str, plots))}", flush=True)
    return result


def family_eval_config(config: SweepConfig, models: tuple[str, ...], names: tuple[str, ...],
                       output_dir: Path) -> EvalConfig:
    """The sweep's --eval-* settings, on the training run's actor settings, for the base and the family.

    No --eval-tasks: the training task's own `eval_tasks` (numina_math -> math500), else the task itself.
    """
    train = config.train
    tasks = config.eval.tasks or task_class(train.task).eval_tasks or (train.task,)
    return replace(
        config.eval, models=models, names=names, tasks=tasks, output_dir=str(output_dir), base_model="base",
        model=replace(config.eval.model, device=train.model.device),
        rollout=replace(config.eval.rollout, num_generators=train.rollout.num_generators,
                        generator_backend=train.rollout.generator_backend,
                        tensor_parallel_size=train.rollout.tensor_parallel_size,
                        gpu_memory_utilization=train.rollout.gpu_memory_utilization,
                        generation_batch_size=train.rollout.generation_batch_size),
        reward=replace(config.eval.reward, num_verifiers=train.reward.num_verifiers,
                       grade_timeout_s=train.reward.grade_timeout_s))
