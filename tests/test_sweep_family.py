"""The sweep's family: its members (alphas, budgets, aggregation controls) and the per-level view of summary.json."""

import math

import pytest

from ray_effreason.config import SweepConfig
from ray_effreason.family_plots import _level_interval
from ray_effreason.sweep import family_members, family_table, family_view


def test_default_family_and_aggregation_controls():
    names = [member.name for member in family_members(SweepConfig())]
    assert names == ["alpha-0", "alpha-0.1", "alpha-0.2", "alpha-0.4", "alpha-0.8"]
    config = SweepConfig(alphas=(0.2,), control_aggregations="seq-mean-token-mean,seq-mean-token-sum-norm")
    members = family_members(config)
    assert [member.name for member in members] == [
        "alpha-0.2", "alpha-0-seq-mean-token-mean", "alpha-0-seq-mean-token-sum-norm"]
    assert members[2].overrides == {"alpha": 0.0, "aggregation": "seq-mean-token-sum-norm"}
    assert members[2].labels["aggregation"] == "seq-mean-token-sum-norm"


def test_unknown_control_aggregation_names_the_valid_ones():
    with pytest.raises(ValueError, match="seq-mean-token-sum-norm"):
        SweepConfig(control_aggregations="token-mean-please")


def _metrics(accuracy, tokens, levels):
    return {"accuracy": accuracy, "mean_tokens": tokens, "mean_tokens_sem": 1.0, "n_samples": 100,
            "by_level": {str(level): {"accuracy": accuracy, "mean_tokens": value, "mean_tokens_sem": 0.5,
                                      "n_samples": 50} for level, value in levels.items()}}


def test_family_view_reports_the_token_cut_per_level_against_the_base():
    summary = {"models": {"base": {"synthetic": _metrics(0.9, 60.0, {1: 20.0, 6: 100.0})},
                          "alpha-0.2": {"synthetic": _metrics(0.88, 30.0, {1: 5.0, 6: 55.0})}}}
    entries = family_view(summary, {"base": {"alpha": None}, "alpha-0.2": {"alpha": 0.2}}, "synthetic")
    model = entries[1]
    assert model["tokens_vs_base"] == pytest.approx(0.5)
    assert model["by_level"]["1"]["tokens_vs_base"] == pytest.approx(0.25)  # easy: cut by 75%
    assert model["by_level"]["6"]["tokens_vs_base"] == pytest.approx(0.55)  # hard: cut by 45%
    table = family_table(entries, entries[0])
    assert "| alpha-0.2 | 88% / 5.0 / 25% | 88% / 55.0 / 55% |" in table


def test_level_interval_is_the_delta_method_on_two_means():
    mean, half, ratio, ratio_half = _level_interval({"mean_tokens": 50.0, "mean_tokens_sem": 5.0},
                                                    {"mean_tokens": 100.0, "mean_tokens_sem": 10.0})
    assert (mean, half, ratio) == (50.0, pytest.approx(9.8), 50.0)
    assert ratio_half == pytest.approx(196 * 0.5 * math.sqrt(0.02))
    assert math.isnan(_level_interval({"mean_tokens": 5.0}, None)[2])


def test_seeds_train_every_alpha_once_per_seed():
    members = family_members(SweepConfig(alphas=(0.0, 0.2), seeds="0,1,2"))
    assert [member.name for member in members] == [f"alpha-{alpha}-seed-{seed}" for alpha in ("0", "0.2")
                                                   for seed in (0, 1, 2)]
    assert members[4].overrides == {"alpha": 0.2, "seed": 1} == members[4].labels
    assert [member.name for member in family_members(SweepConfig(alphas=(0.2,)))] == ["alpha-0.2"]  # default: one


def test_bad_seeds_and_forced_budgets_are_named():
    with pytest.raises(ValueError, match="seeds: a seed is listed twice"):
        SweepConfig(seeds="1,1")
    with pytest.raises(ValueError, match="seeds: give --seeds with an alpha family"):
        SweepConfig(seeds="0,1", targets="0.6")
    with pytest.raises(ValueError, match="forced_budgets"):
        SweepConfig(forced_budgets="16,0")
    assert SweepConfig(forced_budgets="16, 32").forced_budgets == (16, 32)
