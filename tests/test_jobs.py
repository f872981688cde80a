"""End to end through `ray job submit` on the local head (127.0.0.1, token auth): sweep, train, resume.

Each job is submitted once per module: the tiny sweep's training jobs (jobs/train.py, one per alpha) are the
train job under test, and one of them is resumed by a `ray job submit` of its own command; the paper-preset
sweep runs on its own. The comparison's jobs are in test_compare.py.
"""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ray_effreason import local_cluster
from ray_effreason.cli import to_arguments
from ray_effreason.config import TrainConfig
from ray_effreason.config_tree import from_dict

pytestmark = pytest.mark.ray  # starts a Ray cluster

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_sweep(local_head, tiny_model, tmp_path_factory):
    """`jobs/sweep_alpha.py --preset tiny`, scaled down: two alphas of two steps each, trained as parallel jobs."""
    output = tmp_path_factory.mktemp("tiny-sweep") / "sweep"
    result = local_head.submit("jobs/sweep_alpha.py", "--preset", "tiny", "--model", tiny_model, "--alphas", "0,0.2",
                               "--steps", "2", "--save-every", "2", "--prompts-per-step", "4",
                               "--train-batch-size", "32", "--micro-batch-size", "8", "--max-new-tokens", "32",
                               "--eval-limit", "6", "--eval-max-new-tokens", "32", "--forced-budgets", "8",
                               "--output-dir", str(output))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout.lower()
    return output


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_scaled_down_sweep_runs_as_parallel_jobs_and_writes_the_report(tiny_sweep):
    summary = json.loads((tiny_sweep / "summary.json").read_text())
    assert [entry["alpha"] for entry in summary["family"]] == [None, 0.0, 0.2]
    for entry in summary["family"]:
        for key in ("name", "accuracy", "mean_tokens", "tokens_over_min_tokens", "by_level"):
            assert key in entry, key
        assert entry["mean_tokens"] > 0 and 0 <= entry["accuracy"] <= 1
        # the family view and the evaluation summary are one computation (same schema, same numbers)
        metrics = summary["models"][entry["name"]][summary["family_task"]]
        assert (entry["accuracy"], entry["mean_tokens"]) == (metrics["accuracy"], metrics["mean_tokens"])
        assert summary["labels"][entry["name"]] == {"alpha": entry["alpha"]}
    for alpha in ("0", "0.2"):
        assert (tiny_sweep / f"alpha-{alpha}" / "final_checkpoint").exists()
        assert (tiny_sweep / f"alpha-{alpha}" / "job_id").exists()  # each alpha ran as its own Ray job
    for name in ("pareto.png", "tokens_by_level.png", "thinking_pays.png"):
        assert (tiny_sweep / name).read_bytes()[:8] == PNG_HEADER and (tiny_sweep / name).stat().st_size > 10_000
    assert "| alpha |" in (tiny_sweep / "summary.md").read_text()
    # the base again with its answer forced after 8 tokens of thinking, then the uncut base
    forced, uncut = summary["forced_budgets"]
    assert forced["budget"] == 8 and forced["n_samples"] == 6 and uncut["uncut"] and uncut["budget"] == 32
    assert uncut["accuracy"] == summary["family"][0]["accuracy"]
    assert "| thinking budget (tokens) |" in (tiny_sweep / "summary.md").read_text()


def test_train_job_writes_metrics_rollouts_and_a_loadable_checkpoint(tiny_sweep):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tiny_sweep / "alpha-0.2"  # a jobs/train.py job the sweep submitted
    lines = metrics(run)
    assert [line["step"] for line in lines] == [1, 2]
    for key in ("reward", "accuracy", "mean_tokens", "max_tokens", "truncation_rate", "kl_to_ref", "clip_fraction",
                "time/generate", "time/update", "tokens_per_second"):
        assert key in lines[0], key
    checkpoint = run / "checkpoints" / "step-2"
    AutoModelForCausalLM.from_pretrained(checkpoint)  # Hugging Face format
    AutoTokenizer.from_pretrained(checkpoint)
    assert Path((run / "final_checkpoint").read_text().strip()).resolve() == checkpoint.resolve()
    assert sorted(p.name for p in (run / "rollouts").iterdir()) == ["step-000001.parquet", "step-000002.parquet"]


def test_train_job_resumes_from_the_last_checkpoint(tiny_sweep, local_head, tmp_path):
    # A copy of the sweep's alpha-0.2 run, resumed for one more step by its own command line (config.json) with
    # --steps 3 --resume, submitted with `ray job submit` as a user would.
    run = tmp_path / "resumed"
    shutil.copytree(tiny_sweep / "alpha-0.2", run)
    config = from_dict(TrainConfig, json.loads((run / "config.json").read_text()), where=str(run / "config.json"))
    flags = to_arguments(replace(config, output_dir=str(run), steps=3, resume=True))
    result = local_head.submit("jobs/train.py", *flags)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout.lower()
    assert "resumed from" in result.stdout and "steps 2->3" in result.stdout
    assert [line["step"] for line in metrics(run)] == [1, 2, 3]
    assert metrics(run)[:2] == metrics(tiny_sweep / "alpha-0.2")  # the records before the checkpoint, kept
    assert (run / "final_checkpoint").read_text().strip().endswith("step-3")


def test_bad_flag_is_rejected_naming_the_flag():
    result = subprocess.run([sys.executable, "jobs/train.py", "--alpha", "1.5"], cwd=local_cluster.REPO,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "alpha must be in [0, 1)" in result.stderr


@pytest.mark.slow
def test_scaled_down_paper_preset_sweep_gives_the_three_dataset_table(local_head, tiny_model, data_dir, tmp_path):
    # --preset paper-1.5b, scaled down: a tiny model, NuminaMath-format rows from GSM8K train, one alpha, one step,
    # then the paper's evaluation (GSM8K x1, MATH500 x3, AIME2024 x10 samples) on the local benchmark files
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:16]]
    train = tmp_path / "numina.jsonl"
    train.write_text("".join(json.dumps({"problem": row["question"], "solution": f"so \\boxed{{{row['final']}}}"})
                             + "\n" for row in rows))
    output = tmp_path / "sweep"
    result = local_head.submit(
        "jobs/sweep_alpha.py", "--preset", "paper-1.5b", "--model", tiny_model, "--task-path", str(train),
        "--alphas", "0.2", "--steps", "1", "--prompts-per-step", "2", "--samples-per-prompt", "2",
        "--train-batch-size", "4", "--micro-batch-size", "2", "--num-learners", "1", "--num-generators", "1",
        "--zero-stage", "0", "--no-offload-optimizer", "--max-new-tokens", "8", "--num-verifiers", "1",
        "--num-cpus-per-actor", "0.5", "--generator-backend", "transformers", "--device", "cpu",
        "--eval-limit", "2", "--eval-max-new-tokens", "8", "--eval-data-dir", str(data_dir),
        "--output-dir", str(output))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    summary = json.loads((output / "summary.json").read_text())
    assert set(summary["models"]["alpha-0.2"]) == {"gsm8k", "math500", "aime2024"}
    assert [summary["models"]["base"][task]["n_samples"] for task in ("gsm8k", "math500", "aime2024")] == [2, 6, 20]
    relative = summary["relative"]["alpha-0.2"]
    assert relative["tasks"] == ["aime2024", "gsm8k", "math500"]
    assert {"tokens_pct", "accuracy_pct"} <= set(relative["mean_of_ratios"]) | set(relative["ratio_of_sums"])
    text = (output / "summary.md").read_text()
    assert "mean of ratios" in text and "ratio of sums" in text and "aime2024" in text
    config = json.loads((output / "alpha-0.2" / "config.json").read_text())
    assert config["rollout"]["prompt_template"] == "paper" and config["loss"]["whiten_advantages"] is True
