"""Where a run's numbers go: the job log, DIR/metrics.jsonl, the Ray dashboard's Prometheus gauges,
the experiment loggers of --loggers (loggers.py: TensorBoard, W&B, MLflow), DIR/rollouts/*.parquet;
and the steps' progress (done/total, rate, ETA; progress.py)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ray_effreason.loggers import open_loggers
from ray_effreason.progress import Progress

DASHBOARD_METRICS = ("alpha", "reward", "accuracy", "mean_tokens", "max_tokens", "truncation_rate", "kl_to_ref",
                     "controller/ema_tokens", "controller/target_tokens", "controller/token_violation",
                     "controller/accuracy_slack",
                     "clip_fraction", "tokens_per_second", "step_tokens_per_second", "staleness",
                     "time/generate", "time/grade", "time/update", "time/sync")
# Ray exports an application metric named N as `ray_N`: gauges named effreason_* are ray_effreason_* in Prometheus.
GAUGE_PREFIX = "effreason_"


def prometheus_name(metric: str) -> str:
    """The Prometheus series of a DASHBOARD_METRICS entry (what Grafana and a PromQL query use).

    >>> prometheus_name("mean_tokens"), prometheus_name("time/generate")
    ('ray_effreason_mean_tokens', 'ray_effreason_time_generate')
    """
    return "ray_" + GAUGE_PREFIX + metric.replace("/", "_")


def _record_step(line: str) -> float:
    """A metrics.jsonl record's step; a line a kill tore mid-write is no record (it sorts after every step)."""
    try:
        return json.loads(line)["step"]
    except ValueError:
        return math.inf


class RunLog:
    """`loggers`: names from loggers.LOGGERS (console is always on); `config`: what they record as the run's
    config; `total_steps`: the steps' progress (done/total, rate, ETA) is shown when given."""

    def __init__(self, output_dir: Path, run: str, alpha: float, truncate_after_step: int = 0,
                 loggers: Iterable[str] = ("console",), config: dict[str, Any] | None = None,
                 total_steps: int | None = None):
        self.output_dir, self.run, self.alpha = Path(output_dir), run, alpha
        self.metrics_path = self.output_dir / "metrics.jsonl"
        (self.output_dir / "rollouts").mkdir(parents=True, exist_ok=True)
        self._drop_steps_after(truncate_after_step)
        self._gauges: dict[str, Any] | None = None
        # Opened here, before the driver starts any actor: a missing package fails in seconds.
        self._loggers = open_loggers(loggers, self.output_dir, run, config, resume_step=truncate_after_step)
        self._console = self._loggers[0]
        self._total_steps, self._progress = total_steps, None

    def _drop_steps_after(self, step: int) -> None:
        """On resume, steps after the checkpoint will be run again: keep only their first record."""
        if not self.metrics_path.exists():
            return
        kept = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and _record_step(line) <= step]
        staging = self.metrics_path.with_name(self.metrics_path.name + ".tmp")  # a kill here keeps the old file
        staging.write_text("".join(line + "\n" for line in kept))
        staging.replace(self.metrics_path)

    def info(self, message: str) -> None:
        self._console.info(message)

    def _dashboard(self) -> dict[str, Any]:
        """ray.util.metrics gauges (exported to the dashboard's Prometheus/Grafana), tagged by run."""
        if self._gauges is None:
            from ray.util.metrics import Gauge

            self._gauges = {name: Gauge(GAUGE_PREFIX + name.replace("/", "_"), description=name,
                                        tag_keys=("run",)) for name in DASHBOARD_METRICS}
        return self._gauges

    def step(self, metrics: dict[str, float]) -> None:
        record = {"run": self.run, "time": time.time(), **metrics}
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        for name, gauge in self._dashboard().items():
            value = metrics.get(name)
            if value is not None and math.isfinite(value):
                gauge.set(float(value), tags={"run": self.run})
        for logger in self._loggers:
            logger.log(metrics, int(metrics["step"]))
        if self._total_steps and self._progress is None:  # from the first step's start: actor start-up left out
            self._progress = Progress(self._total_steps, self.run, unit="step", done=int(metrics["step"]) - 1,
                                      every_s=0, started_s_ago=sum(value for key, value in metrics.items()
                                                                   if key.startswith("time/")))
        if self._progress is not None:
            self._progress.update(1)

    def close(self) -> None:
        """Flush and close the loggers (TensorBoard, W&B, MLflow); the job log and metrics.jsonl need none."""
        for logger in self._loggers:
            logger.close()
        if self._progress is not None:
            self._progress.close()

    def rollouts(self, step: int, completions: list[Any], grades: list[Any], rewards: np.ndarray,
                 advantages: np.ndarray, batch: list[Any]) -> None:
        rows = {
            "step": [step] * len(completions),
            "prompt_id": [batch[c.prompt_index].id for c in completions],
            "sample_index": [c.sample_index for c in completions],
            "prompt": [batch[c.prompt_index].prompt for c in completions],
            "completion": [c.text for c in completions],
            "num_tokens": [c.num_tokens for c in completions],
            "finish_reason": [c.finish_reason for c in completions],
            "correct": [grade.correct for grade in grades[: len(completions)]],
            "reward": [float(rewards.flat[c.request_id]) for c in completions],
            "advantage": [float(advantages.flat[c.request_id]) for c in completions],
        }
        path = self.output_dir / "rollouts" / f"step-{step:06d}.parquet"
        staging = path.with_suffix(".tmp")
        pq.write_table(pa.table(rows), staging)
        staging.replace(path)
