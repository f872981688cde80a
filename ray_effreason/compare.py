"""The comparison of issue 12: every method on the same base model, evaluated by the same harness.

This module holds the comparison's facts and its report, pure (no Ray, no I/O but the report files):

    METHODS            each method of issue 12: what it is (kind), the knob it sweeps and the values
    method_members     a method's models as sweep.Member's (name, labels, the training flags over the base config)
    comparison_rows    an evaluation summary -> one row per model: method, knob, value, accuracy, mean tokens,
                       n_samples, per-level numbers (comparison.json)
    comparison_table   the rows as markdown (comparison.md)
    plot_comparison    accuracy vs tokens, one colour per method, 95% Wilson intervals, the joint Pareto
                       front over all models (comparison.png)

and the pipeline of jobs/compare.py (`run_comparison`, Ray): RL members through sweep.train_family, SFT / DPO
members as `jobs/train_offline.py` jobs (offline_methods.py) in the same job queue, one evaluation, the cutoff and
prompted-budget evaluations of the base.

Kinds: "rl" a --reward of the RL loop (driver.py; trained as sweep.train_family trains a family, one Ray job
per model); "cutoff" the base model evaluated with a forced answer at a token budget (no training);
"sft" / "dpo" the learner group's objectives on graded samples of the base (offline_methods.py, one Ray job per
model, `jobs/train_offline.py`); "prompt" the base model with the budget stated in the evaluation prompt
(TALE-style, the rebuttal's wording: budget_prompts.WORDINGS["tale"], through EvalConfig.prompt_budget; no
training). l1_max models are evaluated as L1 evaluates them: the knob's budget stated in every prompt in L1's
wording (what they were trained to read), the generation budget unchanged.

Token-valued knobs are given as fractions of the run's --max-new-tokens, so one table serves the tiny
reasoner (256 tokens) and the paper's models (32,000).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ray_effreason.config import SweepConfig
from ray_effreason.config_tree import check_positive, nested, option, split_list
from ray_effreason.eval_actors import EvalActorCache, generation_budget
from ray_effreason.offline_methods import OfflineConfig
from ray_effreason.sweep import Member, forced_answer_config


@dataclass(frozen=True)
class Method:
    """One method of the comparison: `knob` (a flat config name, or the evaluation budget) swept over `values`."""

    kind: str
    knob: str
    values: tuple[float, ...]
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed training flags (the reward's or method's name)
    token_fractions: bool = False  # values are fractions of --max-new-tokens
    token_overrides: dict[str, float] = field(default_factory=dict)  # fixed flags given as fractions of it
    about: str = ""


METHODS: dict[str, Method] = {
    "az": Method("rl", "alpha", (0.1, 0.2, 0.4), {"reward": "arora_zanette"},
                 about="Arora & Zanette: 1 - alpha * sigmoid(z), the paper's reward"),
    "cutoff": Method("cutoff", "max_new_tokens", (0.25, 0.5, 0.75), token_fractions=True,
                     about="the base model, thinking cut at the budget and the answer forced"),
    "sft_shortest": Method("sft", "samples_per_prompt", (4, 8), {"method": "sft_shortest"},
                           about="SFT on the shortest correct of G samples per training prompt"),
    "dpo": Method("dpo", "dpo_beta", (0.05, 0.1, 0.5), {"method": "dpo"},
                  about="DPO: shortest correct over longest correct (or a wrong one)"),
    "prompt_budget": Method("prompt", "prompt_budget", (0.25, 0.5, 1.0), token_fractions=True,
                            about="the base model asked to 'answer in less than N tokens'"),
    "kimi": Method("rl", "kimi_weight", (0.5, 1.0, 1.5), {"reward": "kimi"}, about="Kimi k1.5 length reward"),
    "dapo_overlong": Method("rl", "overlong_max_tokens", (0.25, 0.5, 0.75), {"reward": "dapo_overlong"},
                            token_fractions=True, about="DAPO soft overlong punishment, L_max swept"),
    "cosine": Method("rl", "cosine_max_tokens", (0.25, 0.5, 1.0), {"reward": "cosine"}, token_fractions=True,
                     about="cosine length reward (Yeo et al.), T swept"),
    "dler_truncation": Method("rl", "truncation_tokens", (0.25, 0.5, 0.75), {"reward": "dler_truncation"},
                              token_fractions=True, about="DLER truncation penalty, L swept"),
    "l1_max": Method("rl", "l1_budget_max", (0.25, 0.5, 1.0), {"reward": "l1_max"}, token_fractions=True,
                     token_overrides={"l1_budget_min": 0.1},  # L1: 100 of 4000 tokens is the shortest budget
                     about="L1-Max, budgets up to the value written in the training prompts"),
    "pass_rate": Method("rl", "alpha", (0.1, 0.2, 0.4), {"reward": "pass_rate"},
                        about="the paper's reward, alpha scaled by the group's pass rate"),
}


def knob_values(name: str, max_new_tokens: int) -> list[float | int]:
    """The method's knob values; token fractions become token counts of the run's budget.

    >>> knob_values("cutoff", 256), knob_values("az", 256)
    ([64, 128, 192], [0.1, 0.2, 0.4])
    """
    method = _method(name)
    if method.token_fractions:
        return [max(1, round(value * max_new_tokens)) for value in method.values]
    return list(method.values)


def method_members(name: str, max_new_tokens: int, limit: int | None = None) -> list[Member]:
    """The models of method `name`, one per knob value: `<method>-<value>`, labels {method, knob, value}.

    >>> [(member.name, member.overrides) for member in method_members("kimi", 256)][0]
    ('kimi-0.5', {'reward': 'kimi', 'kimi_weight': 0.5})
    """
    method = _method(name)
    members = []
    for value in knob_values(name, max_new_tokens)[:limit]:
        fixed = {**method.overrides, **{name: max(1, round(fraction * max_new_tokens))
                                        for name, fraction in method.token_overrides.items()}}
        overrides = {**fixed, method.knob: value}
        members.append(Member(f"{name}-{value:g}", {"method": name, "knob": method.knob, "value": value}, overrides))
    return members


def comparison_rows(summary: dict[str, Any], labels: dict[str, dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """One row per model of `labels` (name -> {method, knob, value}) from an evaluation summary's `models`."""
    names = ("accuracy", "mean_tokens", "truncation_rate", "n_samples")
    rows = []
    for name, label in labels.items():
        metrics = summary["models"][name][task]
        rows.append({"name": name, **label, "task": task, **{key: metrics.get(key) for key in names},
                     "by_level": {level: {key: values.get(key) for key in names}
                                  for level, values in metrics.get("by_level", {}).items()}})
    return rows


def comparison_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown, one line per model, the joint Pareto front marked.

    >>> print(comparison_table([{"name": "base", "method": "base", "knob": None, "value": None, "accuracy": 0.9,
    ...                          "mean_tokens": 100.0, "n_samples": 10}]))
    | model | method | knob = value | accuracy | mean tokens | on the front |
    |---|---|---|---|---|---|
    | base | base | - | 90.0% | 100.0 | yes |
    """
    from ray_effreason.report import pareto_front

    front = set(pareto_front([(row["mean_tokens"], row["accuracy"]) for row in rows]))
    lines = ["| model | method | knob = value | accuracy | mean tokens | on the front |", "|---|---|---|---|---|---|"]
    for index, row in enumerate(rows):
        knob = "-" if row.get("knob") is None else f"{row['knob']} = {row['value']:g}"
        lines.append(f"| {row['name']} | {row['method']} | {knob} | {100 * row['accuracy']:.1f}% | "
                     f"{row['mean_tokens']:.1f} | {'yes' if index in front else ''} |")
    return "\n".join(lines)


def plot_comparison(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Accuracy vs mean tokens: one colour and marker per method (its models joined by knob order), 95% Wilson
    intervals, the joint Pareto front over every model as a dashed line; left every model, right a zoom on the
    models within 10 points of the best accuracy (where the front is), the legend beside both."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from ray_effreason.family_plots import wilson_error_bars
    from ray_effreason.report import pareto_front

    figure = Figure(figsize=(12.5, 5.2))
    panels = figure.subplots(1, 2)
    methods = list(dict.fromkeys(row["method"] for row in rows))
    palette, markers = colormaps["tab20"], "osD^vP*Xhp<>"
    front = pareto_front([(row["mean_tokens"], row["accuracy"]) for row in rows])
    best = max(row["accuracy"] for row in rows)
    near = [row for row in rows if row["accuracy"] >= best - 0.10]
    for axes, shown in ((panels[0], rows), (panels[1], near)):
        for index, method in enumerate(methods):
            points = sorted((row for row in shown if row["method"] == method), key=lambda row: row["mean_tokens"])
            if not points:
                continue
            xs, ys = [row["mean_tokens"] for row in points], [100 * row["accuracy"] for row in points]
            base = method == "base"
            axes.errorbar(xs, ys, yerr=wilson_error_bars(points),
                          fmt="*" if base else markers[index % len(markers)] + "-",
                          color="black" if base else palette(index % 20), capsize=3, markersize=13 if base else 6,
                          label=method, zorder=3)
        in_view = [index for index in front if rows[index] in shown]
        axes.plot([rows[index]["mean_tokens"] for index in in_view],
                  [100 * rows[index]["accuracy"] for index in in_view], "k--", linewidth=1.2, zorder=4,
                  label="joint Pareto front")
        axes.set_xlabel("mean generated tokens per sample (all samples)")
        axes.set_ylabel("accuracy (%), 95% Wilson intervals")
        axes.grid(alpha=0.3)
    panels[0].set_title("every model")
    panels[1].set_title(f"zoom: within 10 points of the best ({100 * best:.1f}%)")
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    figure.suptitle("every method on the same base model, evaluated by the same harness")
    figure.tight_layout(rect=(0, 0, 0.86, 1))
    figure.savefig(path, dpi=120)
    return Path(path)


def write_comparison(rows: Sequence[dict[str, Any]], output_dir: str | Path) -> dict[str, Path]:
    """comparison.json, comparison.md and comparison.png in `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": output_dir / "comparison.json", "md": output_dir / "comparison.md",
             "png": output_dir / "comparison.png"}
    paths["json"].write_text(json.dumps(list(rows), indent=2, allow_nan=False))
    paths["md"].write_text(comparison_table(rows) + "\n")
    plot_comparison(rows, paths["png"])
    return paths


def _method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {','.join(METHODS)}")
    return METHODS[name]


# ---------------------------------------------------------------- the pipeline (jobs/compare.py)

TRAINED_KINDS = ("rl", "sft", "dpo")  # a Ray job per model, then evaluated; "cutoff" and "prompt" evaluate the base


def _compare_sweep() -> SweepConfig:
    return SweepConfig(output_dir="runs/compare")


@dataclass(frozen=True)
class CompareConfig:
    """The comparison: `methods` (METHODS names) on the sweep's base, training and evaluation settings."""

    methods: tuple[str, ...] = option(tuple(METHODS), "methods, comma-separated: " + ",".join(METHODS))
    values_per_method: int | None = option(None, "sweep only the first N knob values of each method (a quick run)")
    sweep: SweepConfig = nested(_compare_sweep, hide=("alphas", "targets", "seeds", "forced_budgets"))
    # sft_shortest / dpo: their epochs (and dpo_beta, which the dpo method sweeps itself)
    offline: OfflineConfig = nested(OfflineConfig, hide=("dpo_beta",))

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", split_list(self.methods))
        for name in self.methods:
            _method(name)
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods: give each at least once and none twice, got {list(self.methods)}")
        check_positive(self, "values_per_method")


def offline_config(config: CompareConfig, member: Member, base: str, output_dir: Path) -> Any:
    """The `jobs/train_offline.py` config of an sft / dpo member: the sweep's training settings, its knob."""
    from dataclasses import replace

    from ray_effreason.config_tree import from_flat
    from ray_effreason.offline_methods import OfflineTrainConfig

    train = replace(config.sweep.train, output_dir=str(output_dir / member.name), run_name=member.name,
                    model=replace(config.sweep.train.model, model=base))
    return from_flat(OfflineTrainConfig, member.overrides, base=OfflineTrainConfig(offline=config.offline, train=train),
                     where=f"comparison member {member.name}")


def submit_offline_job(config: Any, name: str, client: Any) -> str:
    """One `jobs/train_offline.py` job (as sweep.submit_job submits `jobs/train.py`); returns the job id."""
    import sys
    import uuid

    import ray

    from ray_effreason.cli import to_arguments

    flags = " ".join(json.dumps(argument) for argument in to_arguments(config))
    runtime_env = ray.get_runtime_context().runtime_env or {}
    if runtime_env.get("working_dir"):  # submitted with a working dir: children get the same one
        entrypoint, env = f"python jobs/train_offline.py {flags}", dict(runtime_env)
    else:
        script = Path(__file__).resolve().parents[1] / "jobs" / "train_offline.py"
        entrypoint, env = f"{sys.executable} {script} {flags}", None
    run_dir = Path(config.train.output_dir)
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=env,
                               submission_id=f"{run_dir.parent.name}-{name}-{uuid.uuid4().hex[:8]}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "job_id").write_text(job_id)
    print(f"{name}: submitted job {job_id} -> {run_dir}", flush=True)
    return job_id


def offline_submitters(config: CompareConfig, members: Sequence[Member], base: str, client: Any,
                       output_dir: Path) -> dict[str, Any]:
    """name -> a function submitting that sft / dpo member's job, for every unfinished one (a finished one,
    DIR/final_checkpoint, is skipped). They join the RL jobs' queue (sweep.train_family); a failed one is run
    again from the start (its samples are redrawn with the same seeds), at most --job-attempts runs per member."""
    import functools

    from ray_effreason.sweep import untrained

    return {member.name: functools.partial(submit_offline_job, offline_config(config, member, base, output_dir),
                                           member.name, client)
            for member in untrained(list(members), output_dir)}


def run_comparison(config: CompareConfig, dashboard_url: str) -> dict[str, Any]:
    """1 base, 2 train every RL, SFT and DPO member as its own Ray job (all at once, a finished one skipped on
    rerun), 3 evaluate the base and the trained models, the cutoff budgets and the prompted budgets,
    4 comparison.json / .md / .png."""
    from dataclasses import replace

    from ray.job_submission import JobSubmissionClient

    from ray_effreason.eval_runner import evaluate
    from ray_effreason.sweep import build_base, family_eval_config, train_family

    sweep = replace(config.sweep, output_dir=str(Path(config.sweep.output_dir).resolve()))
    config = replace(config, sweep=sweep)
    output_dir = Path(sweep.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    budget, limit = sweep.train.rollout.max_new_tokens, config.values_per_method
    members = {name: method_members(name, budget, limit) for name in config.methods}

    def of_kind(*kinds: str) -> list[Member]:
        return [member for name in config.methods if METHODS[name].kind in kinds for member in members[name]]

    # ------------------------------------------------------------------ 1. base
    base = build_base(sweep)
    eval_config = family_eval_config(sweep, (base,), ("base",), output_dir / "eval")
    task = eval_config.tasks[0]
    # ------------------------------------------------------------------ 2. train (in parallel: offline jobs first)
    client = JobSubmissionClient(f"http://{dashboard_url}")
    offline = offline_submitters(config, of_kind("sft", "dpo"), base, client, output_dir)
    train_family(sweep, of_kind("rl"), base, client, others=offline)  # one queue, --max-parallel-jobs at once
    # ------------------------------------------------------------------ 3. evaluate
    trained = of_kind(*TRAINED_KINDS)
    finals = {m.name: (output_dir / m.name / "final_checkpoint").read_text().strip() for m in trained}
    l1_members = [m for m in trained if m.overrides.get("reward") == "l1_max"]  # evaluated with their budget, below
    plain = [m for m in trained if m not in l1_members]
    labels = {"base": {"method": "base", "knob": None, "value": None}, **{m.name: m.labels for m in plain}}
    eval_config = replace(eval_config, models=(base, *(finals[m.name] for m in plain)),
                          names=("base", *(m.name for m in plain)))
    # the same harness, the base's thinking cut at the budget and the answer forced (EvalConfig.force_answer)
    cutoffs = {member.name: forced_answer_config(eval_config, base, member.name, int(member.labels["value"]),
                                                 output_dir / "eval-cutoff" / member.name)
               for member in of_kind("cutoff")}
    # one set of actors for every evaluation below: the cutoffs force answers beyond the budget (room for them up
    # front), the prompted budgets rewrite the prompts (eval_actors.actor_settings), the L1 models load their weights
    with EvalActorCache(max(map(generation_budget, cutoffs.values()), default=0)) as actors:
        summary = evaluate(eval_config, labels=labels, actors=actors)
        rows = comparison_rows(summary, labels, task)
        for member in of_kind("cutoff"):
            rows += comparison_rows(evaluate(cutoffs[member.name], labels={member.name: member.labels}, actors=actors),
                                    {member.name: member.labels}, task)
        for member in of_kind("prompt"):
            # the base on the same problems with the budget stated in each prompt; generation budget unchanged: the
            # prompt asks, nothing enforces
            prompted = replace(eval_config, models=(base,), names=(member.name,), base_model=member.name,
                               prompt_budget=int(member.labels["value"]), budget_wording="tale",
                               output_dir=str(output_dir / "eval-prompt" / member.name))
            rows += comparison_rows(evaluate(prompted, labels={member.name: member.labels}, actors=actors),
                                    {member.name: member.labels}, task)
        for member in l1_members:
            # L1's protocol: the budget the model was trained to read, in its wording (its knob: the largest budget)
            stated = replace(eval_config, models=(finals[member.name],), names=(member.name,), base_model=member.name,
                             prompt_budget=int(member.labels["value"]), budget_wording="l1",
                             output_dir=str(output_dir / "eval-l1" / member.name))
            rows += comparison_rows(evaluate(stated, labels={member.name: member.labels}, actors=actors),
                                    {member.name: member.labels}, task)
    # ------------------------------------------------------------------ 4. report
    paths = write_comparison(rows, output_dir)
    print(paths["md"].read_text(), flush=True)
    print(f"comparison: {paths['json']}\ntable: {paths['md']}\nplot: {paths['png']}", flush=True)
    return {"rows": rows, "paths": {key: str(path) for key, path in paths.items()}}
