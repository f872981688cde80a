"""Watching a run: TensorBoard/W&B/MLflow loggers, progress lines, Prometheus from `make monitor`, the Grafana JSON.

TensorBoard files are read back with tensorboard's own reader (EventAccumulator); Prometheus is the
distribution's binary, queried over its HTTP API on 127.0.0.1, scraping a real local Ray head.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ray_effreason.config import TrainConfig
from ray_effreason.config_tree import from_flat
from ray_effreason.loggers import LOGGERS, check_available
from ray_effreason.progress import Progress
from ray_effreason.run_log import DASHBOARD_METRICS, RunLog, prometheus_name

REPO = Path(__file__).resolve().parents[1]


def step_metrics(step: int) -> dict:
    """A driver step's metrics as the driver makes them (names as in metrics.jsonl)."""
    return {"step": step, "alpha": 0.2, "reward": 0.1 * step, "accuracy": 0.25, "mean_tokens": 100.0 + step,
            "max_tokens": 200.0, "truncation_rate": 0.0, "mean_tokens_correct": float("nan"), "kl_to_ref": 0.01,
            "clip_fraction": 0.05, "controller/alpha": 0.3, "controller/ema_tokens": 90.0, "time/generate": 1.5,
            "time/update": 2.0, "tokens_per_second": 400.0}


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


# ---------------------------------------------------------------- TensorBoard, the CPU user's default


def test_tensorboard_events_hold_every_step_metric_under_its_jsonl_name(tmp_path):
    log = RunLog(tmp_path, "tb", alpha=0.2, loggers=("tensorboard",), config={"seed": 0})
    for step in (1, 2, 3):
        log.step(step_metrics(step))
    log.close()
    found = scalars(tmp_path / "tensorboard")
    expected = {name for name, value in step_metrics(1).items() if name != "step" and value == value}  # not NaN
    assert set(found) == expected
    assert found["reward"] == [(1, pytest.approx(0.1)), (2, pytest.approx(0.2)), (3, pytest.approx(0.3))]
    assert found["time/generate"][0] == (1, 1.5) and found["controller/alpha"][-1] == (3, pytest.approx(0.3))
    # metrics.jsonl is still written, with the same names
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["mean_tokens"] == 101.0


def test_tensorboard_resume_replaces_the_steps_after_the_checkpoint(tmp_path):
    log = RunLog(tmp_path, "tb", alpha=0.2, loggers=("tensorboard",))
    for step in (1, 2, 3):
        log.step(step_metrics(step))
    log.close()
    resumed = RunLog(tmp_path, "tb", alpha=0.2, loggers=("tensorboard",), truncate_after_step=2)
    resumed.step({**step_metrics(3), "reward": 9.0})
    resumed.close()
    assert [value for step, value in scalars(tmp_path / "tensorboard")["reward"] if step == 3] == [9.0]


def test_unknown_logger_is_a_config_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match="console"):
        from_flat(TrainConfig, {"loggers": "console,tensorbord"})
    assert from_flat(TrainConfig, {"loggers": "tensorboard, wandb"}).loggers == ("tensorboard", "wandb")


def test_missing_logger_package_names_the_extra_to_install(tmp_path):
    # A Python without site-packages: wandb and mlflow are missing for real (loggers.py imports only the stdlib).
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(REPO)!r})
        from ray_effreason.loggers import check_available
        for name in ("wandb", "mlflow"):
            try:
                check_available(["console", name])
            except ImportError as error:
                print(error)
    """)
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'ray_effreason[wandb]'" in result.stdout, result.stderr
    assert "pip install 'ray_effreason[mlflow]'" in result.stdout
    check_available(["console", "tensorboard"])  # a main dependency: always there


# ---------------------------------------------------------------- W&B and MLflow, offline (optional extras)


def test_wandb_offline_run_is_written_under_the_run_dir(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install 'ray_effreason[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = RunLog(tmp_path, "wb", alpha=0.2, loggers=("wandb",), config={"seed": 0})
    for step in (1, 2):
        log.step(step_metrics(step))
    log.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


def test_mlflow_file_store_holds_every_step(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'ray_effreason[mlflow]')")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    log = RunLog(tmp_path, "mf", alpha=0.2, loggers=("mlflow",), config={"seed": 0, "model": {"model": "tiny"}})
    for step in (1, 2):
        log.step(step_metrics(step))
    log.close()
    client = MlflowClient((tmp_path / "mlruns").as_uri())
    run, = client.search_runs([client.get_experiment_by_name("ray_effreason").experiment_id])
    assert run.info.run_name == "mf" and run.data.params["model/model"] == "tiny"
    history = client.get_metric_history(run.info.run_id, "time/generate")
    assert [(metric.step, metric.value) for metric in history] == [(1, 1.5), (2, 1.5)]


# ---------------------------------------------------------------- progress


def test_progress_plain_lines_give_done_total_rate_and_eta():
    stream = io.StringIO()
    progress = Progress(4, "rl", unit="step", done=1, every_s=0, stream=stream)  # resumed after step 1
    for _ in range(3):
        time.sleep(0.01)
        progress.update(1, "reward 0.5")
    lines = stream.getvalue().splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["[rl] 2/4 steps (50%)", "[rl] 3/4 steps (75%)",
                                                         "[rl] 4/4 steps (100%)"]
    assert re.search(r" \| [\d.]+ (steps/s|s/step) \| elapsed \d+s \| ETA \d+s \| reward 0.5$", lines[0]), lines[0]
    assert "ETA 0s" in lines[-1]


def test_progress_on_a_terminal_is_a_tqdm_bar():
    stream = io.StringIO()
    with Progress(10, "sft", terminal=True, stream=stream) as progress:
        progress.update(5)
    assert "5/10" in stream.getvalue() and "|" in stream.getvalue() and "[sft]" not in stream.getvalue()


# ---------------------------------------------------------------- Grafana


def test_grafana_dashboard_has_a_panel_per_gauge_on_the_datasource_ray_provisions():
    from ray.dashboard.modules.metrics.metrics_head import DEFAULT_PROMETHEUS_NAME

    from ray_effreason.monitor import GRAFANA_DASHBOARD, grafana_dashboard

    dashboard = json.loads(GRAFANA_DASHBOARD.read_text())
    assert dashboard == grafana_dashboard(), "regenerate it: python -m ray_effreason.monitor grafana"
    datasource, = [item for item in dashboard["templating"]["list"] if item["type"] == "datasource"]
    assert datasource["query"] == "prometheus" and datasource["current"]["value"] == DEFAULT_PROMETHEUS_NAME
    expressions = {panel["title"]: panel["targets"][0]["expr"] for panel in dashboard["panels"]}
    assert set(expressions) == set(DASHBOARD_METRICS)
    for metric, expression in expressions.items():
        assert prometheus_name(metric) in expression and expression.startswith("max by (run)")
    assert all(panel["datasource"] == "${" + datasource["name"] + "}" and panel["targets"][0]["legendFormat"]
               == "{{run}}" for panel in dashboard["panels"])
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)


# ---------------------------------------------------------------- a real run, real Ray




@pytest.mark.ray
def test_two_step_training_run_writes_tensorboard_scalars_and_progress(ray_local, tiny_model, cpu_train_config,
                                                                       tmp_path, capfd):
    from ray_effreason.driver import train

    config = cpu_train_config(tiny_model, tmp_path / "run", run_name="tb-run", max_prompts=8, steps=2, save_every=2,
                              seed=0, samples_per_prompt=2, prompts_per_step=2, max_new_tokens=8, train_batch_size=4,
                              micro_batch_size=4, num_cpus_per_actor=0.5, loggers="tensorboard")
    train(config)
    found = scalars(tmp_path / "run" / "tensorboard")
    for name in ("reward", "accuracy", "mean_tokens", "max_tokens", "truncation_rate", "kl_to_ref", "alpha",
                 "tokens_per_second", "time/generate", "time/grade", "time/update", "time/sync"):
        assert [step for step, _ in found[name]] == [1, 2], name
    jsonl = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [value for _, value in found["mean_tokens"]] == pytest.approx([row["mean_tokens"] for row in jsonl])
    assert "[tb-run] 2/2 steps (100%)" in capfd.readouterr().out


@pytest.mark.ray
def test_evaluation_summary_goes_to_the_logger_and_shows_progress(ray_local, tiny_model, tmp_path, capfd):
    from ray_effreason.config import EvalConfig
    from ray_effreason.eval_runner import evaluate

    config = from_flat(EvalConfig, {
        "models": tiny_model, "names": "tiny", "tasks": "synthetic", "output_dir": str(tmp_path / "eval"),
        "samples": 1, "limit": 4, "batch_size": 2, "max_new_tokens": 8, "num_verifiers": 1, "device": "cpu",
        "generator_backend": "transformers"})
    summary = evaluate(config, loggers=("tensorboard",))
    found = scalars(tmp_path / "eval" / "tensorboard")
    metrics = summary["models"]["tiny"]["synthetic"]
    assert found["eval/tiny/synthetic/mean_tokens"] == [(0, pytest.approx(metrics["mean_tokens"]))]
    assert found["eval/tiny/synthetic/accuracy"] == [(0, pytest.approx(metrics["accuracy"]))]
    out = capfd.readouterr().out
    assert "[tiny synthetic] 2/4 samples (50%)" in out and "[tiny synthetic] 4/4 samples (100%)" in out


# ---------------------------------------------------------------- Prometheus via make monitor

PROMETHEUS_PORT = 9393


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="no prometheus binary (Debian/Ubuntu: apt-get install -y prometheus; .ci/run does)")
def test_make_monitor_prometheus_returns_mean_tokens_of_a_named_run(local_head, tmp_path):
    from ray_effreason import local_cluster

    monitor = ["make", "--no-print-directory", "-C", str(REPO), "monitor", f"RAY_TEMP_DIR={local_head.temp_dir}",
               f"PROMETHEUS_PORT={PROMETHEUS_PORT}", f"PROMETHEUS_DIR={tmp_path / 'prometheus'}"]
    # The driver's side, as in a job: connect to the head and log steps of a run named "monitored".
    driver = textwrap.dedent(f"""
        import time, ray
        from ray_effreason.run_log import RunLog
        ray.init(address="127.0.0.1:{local_head.gcs_port}")
        log = RunLog({str(tmp_path / 'run')!r}, "monitored", alpha=0.2)
        for step in range(1, 200):
            log.step({{"step": step, "mean_tokens": 100.0 + step, "reward": 0.5}})
            time.sleep(1)
    """)
    process = None
    try:
        started = subprocess.run(monitor, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"127.0.0.1:{PROMETHEUS_PORT}" in started.stdout
        with (tmp_path / "driver.log").open("w") as driver_log:  # the child keeps its own descriptor
            process = subprocess.Popen([sys.executable, "-c", driver], env=local_cluster.ray_environment(),
                                       stdout=driver_log, stderr=subprocess.STDOUT)
        query = urllib.parse.quote(f'{prometheus_name("mean_tokens")}{{run="monitored"}}')
        deadline, result = time.time() + 120, []
        while time.time() < deadline and not result:
            time.sleep(2)
            with urllib.request.urlopen(f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query?query={query}") as answer:
                result = json.load(answer)["data"]["result"]
        assert result, ("no ray_effreason_mean_tokens{run='monitored'} in Prometheus after 120 s; the driver's log:\n"
                        + (tmp_path / "driver.log").read_text()[-2000:])
        assert float(result[0]["value"][1]) > 100.0
        # Prometheus listens on 127.0.0.1 only
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{PROMETHEUS_PORT}" in listening and f"*:{PROMETHEUS_PORT}" not in listening
    finally:
        if process is not None:
            process.kill()
            process.wait()
        subprocess.run([sys.executable, "-m", "ray_effreason.monitor", "stop", "--data-dir",
                        str(tmp_path / "prometheus")], cwd=REPO, check=False)


def test_every_logger_name_is_documented():
    text = (REPO / "docs" / "monitoring.md").read_text()
    assert all(f"`{name}`" in text for name in LOGGERS)
    assert os.path.exists(REPO / "cluster" / "prometheus.yml")
