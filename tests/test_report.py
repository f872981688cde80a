"""Pareto front properties, Markdown tables and the PNG report."""

import random

import numpy as np
import pytest
from matplotlib.image import imread

from ray_effreason.evaluation import compute_metrics, records_to_table
from ray_effreason.report import (
    levels_markdown_table,
    markdown_table,
    pareto_front,
    plot_pareto,
    plot_tokens_by_level,
    write_report,
)

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------
# Pareto front

def weakly_dominates(first, second):
    return first[0] <= second[0] and first[1] >= second[1]


@pytest.mark.parametrize("seed", range(100))
def test_pareto_front_random_points_every_other_point_dominated_and_front_monotone(seed):
    generator = random.Random(seed)
    # A small integer grid forces ties and exact duplicates.
    points = [(generator.randint(0, 6), generator.randint(0, 6)) for _ in range(generator.randint(1, 15))]
    front = pareto_front(points)
    assert front, "a non-empty set always has a front"
    front_points = [points[index] for index in front]
    # Monotone: tokens and accuracy strictly increase along the front (so no duplicates on it).
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(front_points, front_points[1:]))
    # No front point is strictly dominated by any point.
    for index in front:
        assert not any(weakly_dominates(other, points[index]) and other != points[index] for other in points)
    # Every other point is weakly dominated by a front point.
    for index in set(range(len(points))) - set(front):
        assert any(weakly_dominates(points[f], points[index]) for f in front)


def test_pareto_front_duplicates_keep_lowest_index():
    assert pareto_front([(5, 0.5), (5, 0.5), (1, 0.1), (1, 0.1)]) == [2, 0]


def test_pareto_front_skips_missing_coordinates():
    assert pareto_front([(None, 0.9), (10, float("nan")), (20, 0.5)]) == [2]
    assert pareto_front([]) == []


# ----------------------------------------------------------------------------------------------
# Tables and plots

def make_summary(levels=True, base_model="base"):
    """Three models on two tasks, two difficulty levels, 3 samples per problem."""
    rng = np.random.default_rng(0)
    records = []
    for model, scale, skill in [("base", 1.0, 0.8), ("alpha_0.1", 0.6, 0.78), ("alpha_0.4", 0.3, 0.6)]:
        for task, task_tokens in [("math500", 4000), ("aime2024", 12000)]:
            for problem in range(20):
                level = 1 + problem % 2
                for sample in range(3):
                    tokens = int(task_tokens * scale * level * rng.uniform(0.5, 1.5))
                    records.append({
                        "model": model, "task": task, "problem_id": str(problem), "sample_index": sample,
                        "num_tokens": tokens, "finish_reason": "length" if tokens > 15000 else "stop",
                        "extracted_answer": "1", "correct": bool(rng.random() < skill / level),
                        "level": level if levels else None, "min_tokens": None})
    return compute_metrics(records_to_table(records), base_model=base_model)


def test_markdown_table_has_a_row_per_model_and_task_and_normalized_rows():
    summary = make_summary()
    table = markdown_table(summary)
    for model in ("base (base)", "alpha_0.1", "alpha_0.4"):
        for task in ("math500", "aime2024"):
            assert f"| {model} | {task} |" in table
    normalized = summary["relative"]["alpha_0.4"]
    assert (f"| alpha_0.4 | aime2024, math500 | {normalized['mean_of_ratios']['tokens_pct']:,.1f} "
            f"| {normalized['mean_of_ratios']['accuracy_pct']:,.1f} | {normalized['ratio_of_sums']['tokens_pct']:,.1f}"
            in table)
    assert "| base | aime2024, math500 | 100.0 | 100.0 | 100.0 | 100.0 |" in table
    assert "| alpha_0.1 | math500 | 1 | " in levels_markdown_table(summary)


def test_markdown_table_without_base_has_no_normalized_section():
    table = markdown_table(make_summary(levels=False, base_model=None))
    assert "Normalized" not in table and table.count("\n") == 2 + 6
    assert levels_markdown_table(make_summary(levels=False, base_model=None)) == ""


def assert_real_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_HEADER
    assert len(data) > 10_000
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0).shape[0] > 10  # not a blank canvas


def test_write_report_writes_markdown_and_non_empty_pngs(tmp_path):
    paths = write_report(make_summary(), tmp_path / "report")
    assert set(paths) == {"summary_md", "pareto_png", "tokens_by_level_png"}
    assert "## By difficulty level" in paths["summary_md"].read_text()
    assert_real_png(paths["pareto_png"])
    assert_real_png(paths["tokens_by_level_png"])
    # 2 task panels + 1 normalized panel: wider than tall.
    height, width = imread(paths["pareto_png"]).shape[:2]
    assert width > 2.5 * height


def test_write_report_without_levels_skips_tokens_by_level(tmp_path):
    summary = make_summary(levels=False)
    paths = write_report(summary, tmp_path)
    assert set(paths) == {"summary_md", "pareto_png"}
    with pytest.raises(ValueError, match="no task in the summary has difficulty levels"):
        plot_tokens_by_level(summary, tmp_path / "levels.png")


def test_plot_pareto_normalized_only_needs_a_base_model(tmp_path):
    assert_real_png(plot_pareto(make_summary(), tmp_path / "normalized.png", per_task=False))
    with pytest.raises(ValueError, match="no base model"):
        plot_pareto(make_summary(base_model=None), tmp_path / "none.png", per_task=False)


def test_plot_family_draws_intervals_labels_and_extra_points(tmp_path):
    from ray_effreason.family_plots import plot_family

    def entry(name, alpha, accuracy, tokens, **extra):
        return {"name": name, "alpha": alpha, "accuracy": accuracy, "mean_tokens": tokens, "n_samples": 300,
                "mean_min_tokens": 30.0, "by_level": {"1": {"mean_tokens": tokens / 2}, "2": {"mean_tokens": tokens}},
                **extra}

    entries = [entry("base", None, 0.9, 63.0), entry("alpha-0.1", 0.1, 1.0, 40.0), entry("alpha-0.4", 0.4, 0.8, 31.0)]
    others = [entry("target-0.6", 0.25, 0.88, 38.0, target=0.6)]
    plot_family(entries, tmp_path / "pareto.png", tmp_path / "levels.png", others=others)
    for name in ("pareto.png", "levels.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / name).stat().st_size > 10_000


def test_plot_family_with_seeds_and_the_forced_budget_curve(tmp_path):
    from ray_effreason.family_plots import plot_family, plot_forced_budgets
    from ray_effreason.sweep import seed_means

    def entry(name, alpha, seed, accuracy, tokens):
        return {"name": name, "alpha": alpha, "seed": seed, "accuracy": accuracy, "mean_tokens": tokens,
                "n_samples": 300, "by_level": {"1": {"mean_tokens": tokens / 2}, "2": {"mean_tokens": tokens}}}

    entries = [entry("base", None, None, 0.9, 63.0)] + [
        entry(f"alpha-{alpha:g}-seed-{seed}", alpha, seed, accuracy + 0.01 * seed, tokens + seed)
        for alpha, accuracy, tokens in ((0.1, 0.95, 40.0), (0.8, 0.8, 20.0)) for seed in (0, 1, 2)]
    means = seed_means(entries)
    assert [(row["alpha"], row["seeds"]) for row in means] == [(0.1, [0, 1, 2]), (0.8, [0, 1, 2])]
    assert means[0]["mean_tokens"] == pytest.approx(41.0) and means[0]["mean_tokens_std"] == pytest.approx(1.0)
    assert means[1]["accuracy"] == pytest.approx(0.81) and means[1]["accuracy_std"] == pytest.approx(0.01)
    plot_family(entries, tmp_path / "pareto.png", tmp_path / "levels.png", seed_means=means)
    rows = [{"budget": 16, "accuracy": 0.3, "n_samples": 300, "mean_tokens": 40.0},
            {"budget": 256, "uncut": True, "accuracy": 0.9, "n_samples": 300, "mean_tokens": 66.0}]
    plot_forced_budgets(rows, tmp_path / "thinking.png")
    for name in ("pareto.png", "levels.png", "thinking.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / name).stat().st_size > 10_000
