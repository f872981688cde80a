"""The comparison's methods, rows, table and plot (compare.py), and a scaled-down `jobs/compare.py` end to end."""

import json

import pytest

from ray_effreason.compare import (
    METHODS,
    comparison_rows,
    comparison_table,
    knob_values,
    method_members,
    write_comparison,
)
from ray_effreason.config import TrainConfig
from ray_effreason.config_tree import from_flat
from ray_effreason.rewards import REWARDS

ISSUE_METHODS = "az,cutoff,sft_shortest,dpo,prompt_budget,kimi,dapo_overlong,cosine,dler_truncation,l1_max,pass_rate"


def test_methods_are_the_issues_names_in_its_order():
    assert ",".join(METHODS) == ISSUE_METHODS


@pytest.mark.parametrize("name", [name for name, method in METHODS.items() if method.kind == "rl"])
def test_every_rl_member_is_a_valid_training_config_with_its_reward(name):
    members = method_members(name, max_new_tokens=256)
    assert len({member.name for member in members}) == len(members) >= 2
    for member in members:
        config = from_flat(TrainConfig, {**member.overrides, "max_new_tokens": 256}, where=member.name)
        assert config.reward.reward in REWARDS and config.reward.reward == METHODS[name].overrides["reward"]
        assert member.labels == {"method": name, "knob": METHODS[name].knob, "value": member.overrides[
            METHODS[name].knob]}


def test_token_knobs_scale_with_the_budget():
    assert knob_values("dler_truncation", 256) == [64, 128, 192]
    assert knob_values("dler_truncation", 32000) == [8000, 16000, 24000]
    assert knob_values("dpo", 256) == knob_values("dpo", 32000)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="az,cutoff"):
        method_members("nope", 256)


def fake_summary():
    models = {"base": (0.90, 200.0), "az-0.2": (0.88, 120.0), "kimi-1": (0.80, 150.0), "cutoff-64": (0.50, 64.0)}
    return {"models": {name: {"synthetic": {"accuracy": accuracy, "mean_tokens": tokens, "truncation_rate": 0.0,
                                            "n_samples": 300, "by_level": {"1": {"accuracy": accuracy,
                                                                                 "mean_tokens": tokens / 2,
                                                                                 "n_samples": 100}}}}
                       for name, (accuracy, tokens) in models.items()}}


LABELS = {"base": {"method": "base", "knob": None, "value": None},
          "az-0.2": {"method": "az", "knob": "alpha", "value": 0.2},
          "kimi-1": {"method": "kimi", "knob": "kimi_weight", "value": 1.0},
          "cutoff-64": {"method": "cutoff", "knob": "max_new_tokens", "value": 64}}


def test_rows_table_and_files_one_row_per_model_front_marked(tmp_path):
    rows = comparison_rows(fake_summary(), LABELS, "synthetic")
    assert [row["name"] for row in rows] == list(LABELS)
    assert rows[1]["method"] == "az" and rows[1]["value"] == 0.2 and rows[1]["by_level"]["1"]["mean_tokens"] == 60
    table = comparison_table(rows).splitlines()
    front = {line.split(" | ")[0].strip("| ") for line in table[2:] if line.endswith("| yes |")}
    assert front == {"base", "az-0.2", "cutoff-64"}  # kimi-1 is dominated by az-0.2
    paths = write_comparison(rows, tmp_path)
    assert json.loads(paths["json"].read_text()) == rows
    assert paths["png"].stat().st_size > 10_000


@pytest.mark.ray
@pytest.mark.slow
def test_scaled_down_comparison_runs_as_ray_jobs_and_resumes(local_head, level_one_reasoner, tmp_path):
    # The base: the tiny model after a short SFT on level-1 problems (conftest.py), which are the training file:
    # about 2 in 3 of its samples are correct, of varied lengths, so SFT keeps completions. An RL method, an offline
    # one and an evaluation-only one (dpo shares sft's job, cutoff the evaluation's forced answers: tested there).
    model, problems = level_one_reasoner
    output = tmp_path / "compare"
    flags = ["--preset", "tiny", "--model", model, "--task-path", problems, "--max-prompts", "24",
             "--methods", "az,sft_shortest,prompt_budget", "--values-per-method", "1", "--max-parallel-jobs", "1",
             "--steps", "2", "--save-every", "2", "--prompts-per-step", "4", "--train-batch-size", "16",
             "--micro-batch-size", "8", "--max-new-tokens", "48", "--eval-limit", "6",
             "--eval-max-new-tokens", "48", "--output-dir", str(output)]
    result = local_head.submit("jobs/compare.py", *flags)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    rows = json.loads((output / "comparison.json").read_text())
    assert [(row["name"], row["method"], row["value"]) for row in rows] == [
        ("base", "base", None), ("az-0.1", "az", 0.1), ("sft_shortest-4", "sft_shortest", 4),
        ("prompt_budget-12", "prompt_budget", 12)]
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and row["mean_tokens"] > 0 and row["by_level"]
    for name in ("az-0.1", "sft_shortest-4"):
        assert (output / name / "job_id").exists()  # trained as its own Ray job
    # one queue, one job at a time (--max-parallel-jobs 1): the offline job first, the RL job once it is done
    assert result.stdout.index("sft_shortest-4: job") < result.stdout.index("az-0.1: submitted job")
    sft = json.loads((output / "sft_shortest-4" / "metrics.json").read_text())
    assert sft["prompts"] == 8 and sft["samples_per_prompt"] == 4
    assert 1 <= sft["kept"] <= 8 and sft["epochs"][0]["nll"] > 0 and sft["epochs"][0]["optimizer_steps"] >= 1
    sft_dir = output / "sft_shortest-4"
    assert (sft_dir / "final_checkpoint").read_text().strip() == str(sft_dir / "model")
    assert list((sft_dir / "model").glob("*.safetensors"))  # an HF checkpoint the evaluation loaded
    stated = json.loads((output / "eval-prompt" / "prompt_budget-12" / "generation.json").read_text())
    assert (stated["prompt_budget"], stated["budget_wording"]) == (12, "tale")
    assert (output / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = local_head.submit("jobs/compare.py", *flags)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    for name in ("az-0.1", "sft_shortest-4"):
        assert f"{name}: already trained, skipped" in again.stdout
