"""End to end through `ray job submit` on a local head (127.0.0.1, token auth): train, resume, sweep."""

import json
import subprocess
import sys

import pytest

from ray_effreason import local_cluster

pytestmark = pytest.mark.ray  # starts a Ray cluster

DASHBOARD_PORT = 8366
GCS_PORT = 6391


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    # Its own temp dir: the teardown stops this head only, never a Ray the user has running.
    temp_dir = f"/tmp/rayeff-test-{GCS_PORT}"
    local_cluster.stop(temp_dir)
    local_cluster.start(DASHBOARD_PORT, num_cpus=8, gcs_port=GCS_PORT, temp_dir=temp_dir)
    yield
    local_cluster.stop(temp_dir)


def submit(*script_and_flags: str) -> subprocess.CompletedProcess:
    command = [local_cluster.ray_cli(), "job", "submit", "--address", f"http://127.0.0.1:{DASHBOARD_PORT}",
               "--runtime-env", str(local_cluster.REPO / "cluster" / "runtime_env.local.yaml"),
               "--", "python", *script_and_flags]
    return subprocess.run(command, cwd=local_cluster.REPO, env=local_cluster.ray_environment(),
                          capture_output=True, text=True, timeout=400)


TINY_TRAIN = ["--task", "synthetic", "--samples-per-prompt", "4", "--prompts-per-step", "4", "--max-new-tokens", "32",
              "--max-prompt-tokens", "64", "--train-batch-size", "8", "--micro-batch-size", "4", "--zero-stage", "0",
              "--lr", "1e-4", "--warmup-steps", "0", "--num-verifiers", "1", "--num-cpus-per-actor", "0.5",
              "--max-prompts", "64", "--save-every", "2",
              "--generator-backend", "transformers"]  # the job, not the backend, is under test (vLLM: test_vllm.py)


def test_train_job_writes_metrics_and_a_loadable_checkpoint_and_resumes(head, tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = tmp_path / "run"
    first = submit("jobs/train.py", "--model", tiny_model, "--alpha", "0.2", "--output-dir", str(output),
                   "--steps", "2", *TINY_TRAIN)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "succeeded" in first.stdout.lower()
    lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    for key in ("reward", "accuracy", "mean_tokens", "max_tokens", "truncation_rate", "kl_to_ref", "clip_fraction",
                "time/generate", "time/update", "tokens_per_second"):
        assert key in lines[0], key
    checkpoint = output / "checkpoints" / "step-2"
    AutoModelForCausalLM.from_pretrained(checkpoint)  # Hugging Face format
    AutoTokenizer.from_pretrained(checkpoint)
    assert sorted(p.name for p in (output / "rollouts").iterdir()) == ["step-000001.parquet", "step-000002.parquet"]

    second = submit("jobs/train.py", "--model", tiny_model, "--alpha", "0.2", "--output-dir", str(output),
                    "--steps", "3", "--resume", *TINY_TRAIN)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resumed from" in second.stdout and "steps 2->3" in second.stdout
    lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert (output / "final_checkpoint").read_text().strip().endswith("step-3")


def test_bad_flag_is_rejected_naming_the_flag():
    result = subprocess.run([sys.executable, "jobs/train.py", "--alpha", "1.5"], cwd=local_cluster.REPO,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "alpha must be in [0, 1)" in result.stderr


def test_scaled_down_sweep_runs_as_parallel_jobs_and_writes_the_report(head, tiny_model, tmp_path):
    output = tmp_path / "sweep"
    result = submit("jobs/sweep_alpha.py", "--preset", "tiny", "--model", tiny_model, "--alphas", "0,0.2",
                    "--steps", "2", "--save-every", "2", "--prompts-per-step", "4", "--train-batch-size", "32",
                    "--micro-batch-size", "8", "--max-new-tokens", "32",
                    "--eval-limit", "6", "--eval-max-new-tokens", "32",
                    "--output-dir", str(output))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    summary = json.loads((output / "summary.json").read_text())
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
        assert (output / f"alpha-{alpha}" / "final_checkpoint").exists()
        assert (output / f"alpha-{alpha}" / "job_id").exists()  # each alpha ran as its own Ray job
    for name in ("pareto.png", "tokens_by_level.png"):
        assert (output / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (output / name).stat().st_size > 10_000
    assert "| alpha |" in (output / "summary.md").read_text()


@pytest.mark.slow
def test_scaled_down_paper_preset_sweep_gives_the_three_dataset_table(head, tiny_model, data_dir, tmp_path):
    # --preset paper-1.5b, scaled down: a tiny model, NuminaMath-format rows from GSM8K train, one alpha, one step,
    # then the paper's evaluation (GSM8K x1, MATH500 x3, AIME2024 x10 samples) on the local benchmark files
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:16]]
    train = tmp_path / "numina.jsonl"
    train.write_text("".join(json.dumps({"problem": row["question"], "solution": f"so \\boxed{{{row['final']}}}"})
                             + "\n" for row in rows))
    output = tmp_path / "sweep"
    result = submit("jobs/sweep_alpha.py", "--preset", "paper-1.5b", "--model", tiny_model, "--task-path", str(train),
                    "--alphas", "0.2", "--steps", "1", "--prompts-per-step", "2", "--samples-per-prompt", "2",
                    "--train-batch-size", "4", "--micro-batch-size", "2",
                    "--num-learners", "1", "--num-generators", "1",
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
