"""Where a run's numbers go: the job log, DIR/metrics.jsonl, the Ray dashboard, DIR/rollouts/*.parquet."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DASHBOARD_METRICS = ("alpha", "reward", "accuracy", "mean_tokens", "max_tokens", "truncation_rate", "kl_to_ref",
                     "controller/ema_tokens", "controller/target_tokens", "controller/token_violation",
                     "controller/accuracy_slack",
                     "clip_fraction", "tokens_per_second", "time/generate", "time/grade", "time/update", "time/sync")


class RunLog:
    def __init__(self, output_dir: Path, run: str, alpha: float, truncate_after_step: int = 0):
        self.output_dir, self.run, self.alpha = Path(output_dir), run, alpha
        self.metrics_path = self.output_dir / "metrics.jsonl"
        (self.output_dir / "rollouts").mkdir(parents=True, exist_ok=True)
        self._drop_steps_after(truncate_after_step)
        self._gauges: dict[str, Any] | None = None

    def _drop_steps_after(self, step: int) -> None:
        """On resume, steps after the checkpoint will be run again: keep only their first record."""
        if not self.metrics_path.exists():
            return
        kept = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        self.metrics_path.write_text("".join(line + "\n" for line in kept))

    def info(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] [{self.run}] {message}", flush=True)

    def _dashboard(self) -> dict[str, Any]:
        """ray.util.metrics gauges (exported to the dashboard's Prometheus/Grafana), tagged by run."""
        if self._gauges is None:
            from ray.util.metrics import Gauge

            self._gauges = {name: Gauge("ray_effreason_" + name.replace("/", "_"), description=name,
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
        self.info(" ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                           for key, value in metrics.items() if not key.startswith("time/"))
                  + " | " + " ".join(f"{key[5:]}={value:.1f}s" for key, value in metrics.items()
                                      if key.startswith("time/")))

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
