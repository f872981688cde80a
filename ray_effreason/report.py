"""Summaries -> Pareto front, Markdown tables and PNG plots.

Input is the dict `evaluation.compute_metrics` returns (or `evaluation.read_summary` loads). The
paper's headline view is accuracy against mean generated tokens, per dataset and normalized to
the base model over datasets (PAPER.md §6.1; the site's scatter uses the mean of per-dataset
ratios, its bar chart the ratio of sums; the table shows both, the normalized plot the former).

Plots use matplotlib's object API (`Figure` + Agg canvas, no pyplot), so nothing here touches
global backend state and it runs headless.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure

# ----------------------------------------------------------------------------------------------
# Pareto front


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated (tokens, accuracy) points, sorted by tokens (ascending).

    Fewer tokens and higher accuracy are better. A point is dropped when another has tokens <= and
    accuracy >= with at least one strict; exact duplicates keep only the one with the lowest index.
    Points with a None or NaN coordinate are never on the front. Along the returned front both
    tokens and accuracy strictly increase.

    >>> pareto_front([(100, 0.9), (50, 0.8), (60, 0.7), (200, 0.9), (50, 0.8), (10, 0.1)])
    [5, 1, 0]
    """
    valid = [index for index, (tokens, accuracy) in enumerate(points)
             if tokens is not None and accuracy is not None and not (math.isnan(tokens) or math.isnan(accuracy))]
    # Cheapest first; among equal tokens the most accurate first, then the lowest index (duplicates).
    order = sorted(valid, key=lambda index: (points[index][0], -points[index][1], index))
    front: list[int] = []
    best_accuracy = -math.inf
    for index in order:
        if points[index][1] > best_accuracy:  # strictly better than everything cheaper or as cheap
            front.append(index)
            best_accuracy = points[index][1]
    return front


# ----------------------------------------------------------------------------------------------
# Tables


def _format(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "–" if value is None else f"{value * scale:,.{digits}f}"


def markdown_table(summary: dict[str, Any]) -> str:
    """One row per model per task, then normalized rows vs the base model (both combinations).

    Accuracy, pass@k and truncation are in %, tokens are mean generated tokens (PAPER §4 avg_tokens).
    """
    relative = summary.get("relative") or {}
    base = summary.get("base_model")
    lines = ["| model | task | problems | samples | accuracy % | pass@1 % | pass@max % | mean tokens "
             "| tokens (correct) | truncated % | tokens % of base | accuracy % of base |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model in sorted(summary["models"], key=lambda name: name != base):  # base first, then the rest
        for task, metrics in summary["models"][model].items():
            pass_at = metrics["pass_at_k"]
            normalized = relative.get(model, {}).get("per_task", {}).get(task, {})
            lines.append(
                f"| {model}{' (base)' if model == base else ''} | {task} | {metrics['n_problems']} "
                f"| {metrics['n_samples']} | {_format(metrics['accuracy'], 100)} | {_format(pass_at['1'], 100)} "
                f"| {_format(pass_at[str(len(pass_at))], 100)} | {_format(metrics['mean_tokens'], digits=0)} "
                f"| {_format(metrics['mean_tokens_correct'], digits=0)} | {_format(metrics['truncation_rate'], 100)} "
                f"| {_format(normalized.get('tokens_pct'))} | {_format(normalized.get('accuracy_pct'))} |")
    if relative:
        lines += ["", f"Normalized over tasks vs base `{base}` (PAPER §6.1: the site's scatter uses the mean "
                  "of per-task ratios, its bar chart the ratio of sums):", "",
                  "| model | tasks | tokens % (mean of ratios) | accuracy % (mean of ratios) "
                  "| tokens % (ratio of sums) | accuracy % (ratio of sums) |",
                  "|---|---|---:|---:|---:|---:|"]
        for model, normalized in relative.items():
            mean_of, sum_of = normalized["mean_of_ratios"], normalized["ratio_of_sums"]
            lines.append(f"| {model} | {', '.join(normalized['tasks'])} | {_format(mean_of['tokens_pct'])} "
                         f"| {_format(mean_of['accuracy_pct'])} | {_format(sum_of['tokens_pct'])} "
                         f"| {_format(sum_of['accuracy_pct'])} |")
    return "\n".join(lines) + "\n"


def levels_markdown_table(summary: dict[str, Any]) -> str:
    """Accuracy and mean tokens per difficulty level, one row per model per task per level ('' if none)."""
    lines = ["| model | task | level | problems | accuracy % | mean tokens | truncated % | tokens / min tokens |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for model, tasks in summary["models"].items():
        for task, metrics in tasks.items():
            for level, level_metrics in metrics.get("by_level", {}).items():
                lines.append(
                    f"| {model} | {task} | {level} | {level_metrics['n_problems']} "
                    f"| {_format(level_metrics['accuracy'], 100)} | {_format(level_metrics['mean_tokens'], digits=0)} "
                    f"| {_format(level_metrics['truncation_rate'], 100)} "
                    f"| {_format(level_metrics.get('tokens_over_min_tokens'), digits=2)} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


# ----------------------------------------------------------------------------------------------
# Plots


def _colors(models: Sequence[str]) -> dict[str, Any]:
    """One colour per model, the same in every panel and plot."""
    palette = [f"C{index % 10}" for index in range(len(models))]
    return dict(zip(models, palette))


def _scatter_panel(axes, points: dict[str, tuple[float, float]], colors: dict[str, Any], base: str | None,
                   title: str, xlabel: str, ylabel: str) -> None:
    """Accuracy vs tokens for each model, the Pareto front as a dashed line, the base as a star."""
    models = [model for model, (tokens, accuracy) in points.items() if tokens is not None and accuracy is not None]
    for model in models:
        tokens, accuracy = points[model]
        axes.scatter(tokens, accuracy, color=colors[model], s=160 if model == base else 60,
                     marker="*" if model == base else "o", edgecolors="black", linewidths=0.5, zorder=3,
                     label=f"{model} (base)" if model == base else model)
        axes.annotate(model, (tokens, accuracy), textcoords="offset points", xytext=(5, 5), fontsize=7)
    front = [models[index] for index in pareto_front([points[model] for model in models])]
    if len(front) > 1:
        axes.plot([points[m][0] for m in front], [points[m][1] for m in front], "--", color="gray",
                  zorder=2, label="Pareto front")
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)


def plot_pareto(summary: dict[str, Any], path: str | Path, per_task: bool = True) -> Path:
    """Accuracy vs mean tokens: one panel per task (if per_task) and one normalized-over-tasks panel.

    The normalized panel (mean of per-task ratios vs the base, as in the paper's Figure 1 scatter)
    needs a base model; without one and with per_task=False there is nothing to draw (ValueError).
    """
    models = list(summary["models"])
    base = summary.get("base_model")
    relative = summary.get("relative") or {}
    colors = _colors(models)
    tasks = sorted({task for tasks in summary["models"].values() for task in tasks}) if per_task else []
    panels = len(tasks) + (1 if relative else 0)
    if panels == 0:
        raise ValueError("nothing to plot: per_task=False and the summary has no base model to normalize to")
    figure = Figure(figsize=(4.5 * panels, 4.2), layout="constrained")
    all_axes = figure.subplots(1, panels, squeeze=False)[0]
    for axes, task in zip(all_axes, tasks):
        points = {model: (task_metrics[task]["mean_tokens"], 100 * task_metrics[task]["accuracy"])
                  for model, task_metrics in summary["models"].items() if task in task_metrics}
        _scatter_panel(axes, points, colors, base, task, "mean generated tokens", "accuracy %")
    if relative:
        points = {model: (normalized["mean_of_ratios"]["tokens_pct"], normalized["mean_of_ratios"]["accuracy_pct"])
                  for model, normalized in relative.items()}
        _scatter_panel(all_axes[-1], points, colors, base, f"all tasks, normalized to {base}",
                       "tokens % of base (mean of ratios)", "accuracy % of base (mean of ratios)")
    handles, labels = all_axes[-1].get_legend_handles_labels()
    for axes in all_axes[:-1]:  # a model missing from the last panel still gets a legend entry
        for handle, label in zip(*axes.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def plot_tokens_by_level(summary: dict[str, Any], path: str | Path) -> Path:
    """Mean generated tokens per difficulty level, one line per model, one panel per task with levels.

    Raises ValueError when no task in the summary has difficulty levels.
    """
    models = list(summary["models"])
    colors = _colors(models)
    tasks = sorted({task for tasks in summary["models"].values() for task, metrics in tasks.items()
                    if metrics.get("by_level")})
    if not tasks:
        raise ValueError("no task in the summary has difficulty levels")
    figure = Figure(figsize=(4.5 * len(tasks), 4.2), layout="constrained")
    for axes, task in zip(figure.subplots(1, len(tasks), squeeze=False)[0], tasks):
        for model in models:
            by_level = summary["models"][model].get(task, {}).get("by_level", {})
            if by_level:
                levels = sorted(by_level, key=int)
                axes.plot([int(level) for level in levels], [by_level[level]["mean_tokens"] for level in levels],
                          "o-", color=colors[model], label=model)
        axes.set(title=task, xlabel="difficulty level", ylabel="mean generated tokens")
        axes.xaxis.get_major_locator().set_params(integer=True)  # levels are integers
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def write_report(summary: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write summary.md, pareto.png and (when any task has levels) tokens_by_level.png to out_dir.

    Returns {"summary_md": ..., "pareto_png": ..., "tokens_by_level_png": ...} for the files written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    levels = levels_markdown_table(summary)
    text = "# Evaluation summary\n\n" + markdown_table(summary)
    if levels:
        text += "\n## By difficulty level\n\n" + levels
    paths = {"summary_md": out_dir / "summary.md"}
    paths["summary_md"].write_text(text, encoding="utf-8")
    paths["pareto_png"] = plot_pareto(summary, out_dir / "pareto.png")
    if levels:
        paths["tokens_by_level_png"] = plot_tokens_by_level(summary, out_dir / "tokens_by_level.png")
    return paths


# ----------------------------------------------------------------------------------------------
# records -> summary.json + this report (evaluation's last step; --report without actors)


def summarize(table: Any, base_model: str | None, output_dir: Path, metadata: dict[str, Any],
              labels: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Metrics -> summary.json, summary.md, plots; prints the table and where the files are.

    `labels`: per-model facts beside the metrics (a family's alpha, a method's knob), under "labels".
    """
    from ray_effreason.evaluation import compute_metrics, write_summary

    if table.num_rows == 0:
        raise ValueError("no records to summarize")
    summary = compute_metrics(table, base_model)
    if labels:
        summary["labels"] = labels
    path = write_summary(output_dir, summary, metadata)
    files = write_report(summary, output_dir)
    print(markdown_table(summary))
    print("wrote " + ", ".join(str(file) for file in [path, *files.values()]), flush=True)
    return {**summary, "metadata": metadata}


def report_only(dirs: Sequence[str | Path], output_dir: str | Path, base_model: str | None = None) -> dict[str, Any]:
    """Re-draw tables and plots from the records of one or more evaluation dirs (merged), no actors.

    A dir is an evaluation output dir (holding records.parquet) or a records dataset itself. When the
    same sample is in several dirs the first dir's record is kept. The base model defaults to the
    first dir's summary.json base model, when it is among the records.
    """
    from ray_effreason.evaluation import read_records, read_summary

    sources = []
    for directory in map(Path, dirs):
        if not directory.exists():
            raise FileNotFoundError(f"--report: {directory} does not exist")
        sources.append(directory / "records.parquet" if (directory / "records.parquet").exists() else directory)
    table = read_records(sources)
    dropped = sum(read_records(source).num_rows for source in sources) - table.num_rows
    if dropped:
        print(f"warning: {dropped} records repeat a (model, task, problem, sample) of an earlier dir and were "
              "dropped; evaluate with distinct --names to compare them", flush=True)
    models = set(table.column("model").to_pylist())
    if base_model is None:
        for directory in map(Path, dirs):
            if (directory / "summary.json").is_file():
                base_model = read_summary(directory).get("base_model")
                break
        base_model = base_model if base_model in models else None
    if table.num_rows == 0:
        raise ValueError(f"--report: no records in {[str(source) for source in sources]}")
    return summarize(table, base_model, Path(output_dir), {"sources": [str(source) for source in sources]})
