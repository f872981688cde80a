"""The sweep's figures: the family's accuracy-vs-tokens curve, tokens by level, and the base's thinking curve.

Inputs are sweep.family_view rows (name, alpha, accuracy, mean_tokens, n_samples, by_level with the metric
names of evaluation.compute_metrics) and the sweep's forced-answer rows. matplotlib's object API, as report.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure

from ray_effreason.evaluation import wilson_interval

MODEL_COLORS = ("C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9")  # matplotlib's cycle less C3: red is the base


def wilson_error_bars(rows: Sequence[dict[str, Any]]) -> list[list[float]]:
    """matplotlib's `yerr` (below, above), in accuracy points, of each row's 95% Wilson interval (rows with
    `accuracy` and `n_samples`).

    >>> [[round(value, 2) for value in side] for side in wilson_error_bars([{"accuracy": 0.9, "n_samples": 300}])]
    [[3.92], [2.91]]
    """
    bounds = [wilson_interval(row["accuracy"] * row["n_samples"], row["n_samples"]) for row in rows]
    # max(0, ...): at 0% or 100% the interval's own bound sits on the point, up to float rounding
    return [[max(0.0, 100 * (row["accuracy"] - low)) for row, (low, _) in zip(rows, bounds)],
            [max(0.0, 100 * (high - row["accuracy"])) for row, (_, high) in zip(rows, bounds)]]


def _family_label(entry: dict[str, Any]) -> str:
    if entry.get("label") is not None:  # the caller's own words (e.g. a controller run's name and final alpha)
        return entry["label"]
    if entry.get("target") is not None:
        alpha = entry.get("alpha")
        return f"target {entry['target']:g}" + ("" if alpha is None else f" (α→{alpha:.2f})")
    if entry.get("aggregation") is not None:  # an alpha-0 control under a named loss aggregation
        return f"α={entry['alpha']:g}, {entry['aggregation']}"
    return entry["name"] if entry.get("alpha") is None else f"α={entry['alpha']:g}"


_LABEL_PLACES = tuple((dx, dy, "left" if dx > 0 else "right")  # (dx, dy) in points, alignment; nearest first
                      for reach in (1, 2, 3) for dy in (6 + 12 * (reach - 1), -14 - 12 * (reach - 1))
                      for dx in (5 * reach, -5 * reach))


def _place_labels(figure: Figure, axes: Any, rows: Sequence[dict[str, Any]],
                  unlabelled: Sequence[dict[str, Any]] = ()) -> None:
    """Label each row's point (its 95% interval drawn) so that no two labels overlap and no label covers another
    point or interval, of `rows` or of `unlabelled`: each takes the first free place of _LABEL_PLACES (the first
    one if none is free).

    >>> [place[:2] for place in _LABEL_PLACES[:4]]
    [(5, 6), (-5, 6), (5, -14), (-5, -14)]
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    renderer = FigureCanvasAgg(figure).get_renderer()  # the canvas savefig(".png") draws with
    points = [*rows, *unlabelled]
    below, above = wilson_error_bars(points)
    bars = []  # each point with its interval, in display pixels, 5 px either side
    for row, low, high in zip(points, below, above):
        (x0, y0), (x1, y1) = axes.transData.transform([(row["mean_tokens"], 100 * row["accuracy"] - low),
                                                      (row["mean_tokens"], 100 * row["accuracy"] + high)])
        bars.append(Bbox([[x0 - 5, y0 - 5], [x1 + 5, y1 + 5]]))
    placed: list[Any] = []
    for index, row in enumerate(rows):
        def annotate(place: tuple[int, int, str], row: dict[str, Any] = row) -> Any:
            dx, dy, align = place
            return axes.annotate(_family_label(row), (row["mean_tokens"], 100 * row["accuracy"]),
                                 textcoords="offset points", xytext=(dx, dy), ha=align, fontsize=8)

        for place in _LABEL_PLACES:
            label = annotate(place)
            box = label.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(bar) for other, bar in enumerate(bars) if other != index) and not any(
                    box.overlaps(other) for other in placed):
                break
            label.remove()
        else:  # no free place: the first one
            label = annotate(_LABEL_PLACES[0])
        placed.append(label.get_window_extent(renderer))


def plot_family(entries: Sequence[dict[str, Any]], pareto_path: str | Path, levels_path: str | Path,
                others: Sequence[dict[str, Any]] = (), seed_means: Sequence[dict[str, Any]] = ()) -> None:
    """The family of a sweep: accuracy vs mean tokens as a curve (base marked, 95% Wilson intervals, each point
    labelled, the min-tokens floor drawn when the task has one), and tokens by level.

    `entries` are sweep.family_view rows: name, alpha (None for the base), target (a budget family), label (the
    legend's words, optional), accuracy, mean_tokens, n_samples, by_level {level: {accuracy, mean_tokens, ...}}
    (the metric names of evaluation.compute_metrics). `others`: more models of the same kind drawn as separate
    points named in the legend (e.g. controller runs beside a fixed-alpha family). `seed_means`: sweep.seed_means
    rows of a family trained under several seeds; the curve is then their mean, with the spread over seeds
    (± 1 std) as error bars in both directions, each seed's model a small unlabelled point, and tokens by level
    shows the first seed's models.
    """
    base = [entry for entry in entries if entry["name"] == "base"]
    # an alpha-0 control under another loss aggregation is its own point, not a step of the alpha curve
    others = [*others, *(entry for entry in entries if entry.get("aggregation") is not None)]
    family = sorted((entry for entry in entries if entry["name"] != "base" and entry.get("aggregation") is None),
                    key=lambda entry: -entry["mean_tokens"])
    figure = Figure(figsize=(7.2, 5.0))
    axes = figure.add_subplot()

    def draw(points: Sequence[dict[str, Any]], style: str, color: str, label: str, size: float = 6) -> None:
        if not points:
            return
        xs = [entry["mean_tokens"] for entry in points]
        ys = [100 * entry["accuracy"] for entry in points]
        axes.errorbar(xs, ys, yerr=wilson_error_bars(points), fmt=style, color=color, markersize=size, capsize=3,
                      label=label)

    level_models = family  # tokens by level: every model, or one seed's with --seeds
    if seed_means:
        axes.plot([entry["mean_tokens"] for entry in family], [100 * entry["accuracy"] for entry in family], ".",
                  color="tab:blue", alpha=0.35, label="one seed's model")
        means = sorted(seed_means, key=lambda row: -row["mean_tokens"])
        axes.errorbar([row["mean_tokens"] for row in means], [100 * row["accuracy"] for row in means],
                      xerr=[row["mean_tokens_std"] for row in means], yerr=[100 * row["accuracy_std"] for row in means],
                      fmt="o-", color="tab:blue", capsize=3, label="RL family, mean over seeds (± 1 std)")
        first_seed = min(row["seeds"][0] for row in means)
        level_models = [entry for entry in family if entry.get("seed") in (None, first_seed)]
        family = [{**row, "name": f"alpha-{row['alpha']:g}"} for row in means]  # labelled below
    else:
        draw(family, "o-", "tab:blue", "RL family (95% Wilson intervals)")
    draw(base, "*", "tab:red", "base model", size=14)
    for index, entry in enumerate(others):
        draw([entry], "DsP^v"[index % 5], MODEL_COLORS[(index + 2) % len(MODEL_COLORS)], _family_label(entry), size=8)
    labelled = sorted([*family, *base], key=lambda item: item["mean_tokens"])
    floor = next((entry.get("mean_min_tokens") for entry in labelled if entry.get("mean_min_tokens")), None)
    if floor:
        axes.axvline(floor, color="gray", linestyle=":", label="min-tokens floor (shortest correct trace)")
    axes.margins(x=0.1)  # room for the labels of the outermost points
    axes.set_xlabel("mean generated tokens per sample (all samples)")
    axes.set_ylabel("accuracy (%)")
    lowest = min(100 * wilson_interval(entry["accuracy"] * entry["n_samples"], entry["n_samples"])[0]
                 for entry in [*entries, *others])
    axes.set_ylim(max(0.0, lowest - 3), 101)  # no autoscaled zoom that makes 0.3 points look like a cliff
    axes.set_title("accuracy vs tokens")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    # once the layout is final (the places are in pixels): labels that overlap no other label, point or interval
    # (_place_labels); `others` are named by the legend only (they sit among the family)
    _place_labels(figure, axes, labelled, unlabelled=others)
    figure.savefig(pareto_path, dpi=120)

    _plot_family_levels([*base, *level_models, *others], levels_path)


def _level_interval(values: dict[str, Any], base_values: dict[str, Any] | None) -> tuple[float, float, float, float]:
    """(mean tokens, its 95% half-width, tokens vs base in %, its 95% half-width) of one level.

    The ratio's interval is the delta method on two independent means (model and base sampled apart):
    se(m/b) = (m/b) * sqrt((se_m/m)^2 + (se_b/b)^2).
    """
    mean, sem = values["mean_tokens"], values.get("mean_tokens_sem") or 0.0
    if not base_values or not base_values["mean_tokens"]:
        return mean, 1.96 * sem, math.nan, math.nan
    base_mean, base_sem = base_values["mean_tokens"], base_values.get("mean_tokens_sem") or 0.0
    ratio = mean / base_mean
    ratio_se = ratio * math.sqrt((sem / mean) ** 2 + (base_sem / base_mean) ** 2) if mean else 0.0
    return mean, 1.96 * sem, 100 * ratio, 196 * ratio_se


def _plot_family_levels(entries: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Left: mean tokens by level; right: tokens as % of the base's on the same level (adaptive compute:
    a model that cuts easy problems most sits low on the left of the right panel). 95% intervals."""
    base = next((entry for entry in entries if entry["name"] == "base"), None)
    figure = Figure(figsize=(11.0, 4.6))
    tokens_axes, ratio_axes = figure.subplots(1, 2)
    count = max(1, len(entries))
    for index, entry in enumerate(entries):
        levels = sorted(entry["by_level"], key=int)
        # a small horizontal offset per model keeps the error bars of neighbouring models apart
        xs = [int(level) + 0.25 * (index - (count - 1) / 2) / count for level in levels]
        points = [_level_interval(entry["by_level"][level], base["by_level"].get(level) if base else None)
                  for level in levels]
        style = "*--" if entry["name"] == "base" else "o-"
        color = "tab:red" if entry["name"] == "base" else MODEL_COLORS[index % len(MODEL_COLORS)]
        tokens_axes.errorbar(xs, [point[0] for point in points], yerr=[point[1] for point in points], fmt=style,
                             color=color, capsize=2, markersize=5, label=_family_label(entry))
        if entry["name"] != "base" and base is not None:
            ratio_axes.errorbar(xs, [point[2] for point in points], yerr=[point[3] for point in points], fmt=style,
                                color=color, capsize=2, markersize=5, label=_family_label(entry))
    handles, names = tokens_axes.get_legend_handles_labels()
    tokens_axes.set_xlabel("difficulty level (operations per problem)")
    tokens_axes.set_ylabel("mean generated tokens per sample")
    tokens_axes.set_title("tokens by level (95% intervals)")
    ratio_axes.axhline(100, color="tab:red", linestyle="--", linewidth=1)
    ratio_axes.set_xlabel("difficulty level (operations per problem)")
    ratio_axes.set_ylabel("mean tokens, % of the base's on that level")
    ratio_axes.set_title("where tokens are cut (lower = larger cut)")
    for axes in (tokens_axes, ratio_axes):
        axes.grid(alpha=0.3)
    # one legend for both panels, below them, so it covers no line
    figure.legend(handles, names, loc="lower center", ncol=min(len(names), 8), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=120)



def plot_forced_budgets(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Thinking pays: the base's accuracy when its thinking is cut at each budget and the answer forced
    (sweep.forced_budget_rows), with 95% Wilson intervals; the uncut base is the last point."""
    figure = Figure(figsize=(6.4, 4.4))
    axes = figure.add_subplot()
    rows = sorted(rows, key=lambda row: row["budget"])
    xs = [row["budget"] for row in rows]
    ys = [100 * row["accuracy"] for row in rows]
    axes.errorbar(xs, ys, yerr=wilson_error_bars(rows), fmt="o-", color="tab:red", capsize=3,
                  label="base (95% Wilson intervals)")
    for row, x, y in zip(rows, xs, ys):
        axes.annotate("uncut" if row.get("uncut") else f"{row['budget']}", (x, y), textcoords="offset points",
                      xytext=(4, -12), fontsize=8)
    axes.set_xscale("log", base=2)
    axes.set_xticks(xs, [str(x) for x in xs])
    axes.set_xlabel("thinking budget (generated tokens before the answer is forced)")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 101)
    axes.set_title("thinking pays: the base model cut at a budget")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return Path(path)
