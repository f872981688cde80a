"""Experiment loggers: the same per-step metrics, under the same names as metrics.jsonl, where people look.

    console      the job log (always on, as metrics.jsonl is: run_log.RunLog adds both)
    tensorboard  DIR/tensorboard/ event files (`tensorboard --logdir runs/sweep`: one line per run)
    wandb        Weights & Biases; offline unless WANDB_MODE says otherwise (`wandb sync DIR/wandb/offline-run-*`)
    mlflow       MLflow; a file store at DIR/mlruns unless MLFLOW_TRACKING_URI says otherwise

The peers' equivalents: OpenRLHF --use_wandb/--use_tensorboard, verl trainer.logger, TRL report_to.
Every logger takes `log(metrics, step)` (numbers only; NaN, e.g. mean_tokens_correct with no correct
sample, is left out), `summary(scalars, text)` (an evaluation's or a family's numbers, once) and `close()`.
A logger whose package is missing fails in `open_loggers`, which the driver calls before any actor starts.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

# Logger -> (importable module, how to install it). tensorboard is a main dependency; the others are extras.
REQUIREMENTS = {"tensorboard": ("tensorboard", "pip install tensorboard (a main dependency: `make setup` has it)"),
                "wandb": ("wandb", "pip install 'ray_effreason[wandb]'"),
                "mlflow": ("mlflow", "pip install 'ray_effreason[mlflow]'")}


def numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries (bools and strings dropped), as floats.

    >>> numbers({"step": 3, "reward": 0.5, "mean_tokens_correct": float("nan"), "run": "a", "ok": True})
    {'step': 3.0, 'reward': 0.5}
    """
    return {name: float(value) for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def flat_scalars(tree: Mapping[str, Any], prefix: str = "", skip: Iterable[str] = ()) -> dict[str, float]:
    """Nested dicts -> `a/b/c` names of their finite numbers (for summaries); keys in `skip` are left out.

    >>> flat_scalars({"base": {"gsm8k": {"accuracy": 0.5, "pass_at_k": {"1": 0.5}, "by_level": {}}}}, "eval/",
    ...              skip=("by_level",))
    {'eval/base/gsm8k/accuracy': 0.5, 'eval/base/gsm8k/pass_at_k/1': 0.5}
    """
    result: dict[str, float] = {}
    for key, value in tree.items():
        if key in skip:
            continue
        if isinstance(value, Mapping):
            result.update(flat_scalars(value, f"{prefix}{key}/", skip))
        else:
            result.update({prefix + name: number for name, number in numbers({str(key): value}).items()})
    return result


def flat_leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> `a/b` names of every leaf (a config as parameters).

    >>> flat_leaves({"model": {"model": "tiny", "device": "cpu"}, "seed": 0})
    {'model/model': 'tiny', 'model/device': 'cpu', 'seed': 0}
    """
    result: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            result.update(flat_leaves(value, f"{prefix}{key}/"))
        else:
            result[prefix + str(key)] = value
    return result


@dataclass(frozen=True)
class LoggedRun:
    """What a logger is opened with: where the run writes, its name, its config, the step it resumes after."""

    output_dir: Path
    name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    resume_step: int = 0


class ConsoleLogger:
    """The job log: one line per step, phase times last."""

    def __init__(self, run: LoggedRun):
        self.run = run.name

    def info(self, message: str) -> None:
        from tqdm import tqdm

        # tqdm.write: above a progress bar on a terminal (progress.py), a plain print otherwise
        tqdm.write(f"[{time.strftime('%H:%M:%S')}] [{self.run}] {message}", file=sys.stdout)
        sys.stdout.flush()

    def log(self, metrics: Mapping[str, Any], step: int) -> None:  # noqa: ARG002 (the step is in the metrics)
        self.info(" ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                           for key, value in metrics.items() if not key.startswith("time/"))
                  + " | " + " ".join(f"{key[5:]}={value:.1f}s" for key, value in metrics.items()
                                      if key.startswith("time/")))

    def summary(self, scalars: Mapping[str, float], text: str | None = None) -> None:
        pass  # evaluate and the sweep print their own tables

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Scalars under the metrics.jsonl names (`time/generate` groups under `time`), the config as text."""

    def __init__(self, run: LoggedRun):
        from torch.utils.tensorboard import SummaryWriter

        # A resume runs the steps after its checkpoint again: purge_step drops their earlier events.
        self.writer = SummaryWriter(log_dir=str(run.output_dir / "tensorboard"), flush_secs=10,
                                    purge_step=run.resume_step + 1 if run.resume_step else None)
        if run.config:
            self.writer.add_text("config", "```\n" + json.dumps(run.config, indent=2, default=str) + "\n```")

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        for name, value in numbers(metrics).items():
            if name != "step":
                self.writer.add_scalar(name, value, step)
        self.writer.flush()  # a step takes seconds to minutes: show it now

    def summary(self, scalars: Mapping[str, float], text: str | None = None) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, 0)
        if text:
            self.writer.add_text("summary", text)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A W&B run named after the run; offline by default, so a job never waits for a login."""

    def __init__(self, run: LoggedRun):
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "ray_effreason"), name=run.name,
                              dir=str(run.output_dir), config=dict(run.config),
                              mode=os.environ.get("WANDB_MODE", "offline"), reinit="create_new")

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        self.run.log({name: value for name, value in numbers(metrics).items() if name != "step"}, step=step)

    def summary(self, scalars: Mapping[str, float], text: str | None = None) -> None:
        self.run.summary.update(dict(scalars))
        if text:
            import wandb

            self.run.log({"summary": wandb.Html(f"<pre>{text}</pre>")})

    def close(self) -> None:
        self.run.finish()


class MLflowLogger:
    """An MLflow run in experiment `ray_effreason` (MLFLOW_EXPERIMENT_NAME overrides); the config as params."""

    def __init__(self, run: LoggedRun):
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if uri is None:  # a file store: nothing to run; MLflow 3 refuses one (maintenance mode) unless opted in
            uri = (run.output_dir / "mlruns").resolve().as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "ray_effreason")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        self.run_id = self.client.create_run(experiment_id, run_name=run.name).info.run_id
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(key, str(value)[:500])  # MLflow's limit on a value
                                                   for key, value in flat_leaves(run.config).items()])

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(name, value, now, step)
                                                    for name, value in numbers(metrics).items() if name != "step"])

    def summary(self, scalars: Mapping[str, float], text: str | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(name, value, now, 0) for name, value in scalars.items()])
        if text:
            self.client.log_text(self.run_id, text, "summary.md")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


LOGGERS = {"console": ConsoleLogger, "tensorboard": TensorBoardLogger, "wandb": WandbLogger, "mlflow": MLflowLogger}


def check_available(names: Iterable[str]) -> None:
    """Every logger in `names` is known and its package importable; else an error saying what to install."""
    for name in names:
        if name not in LOGGERS:
            raise ValueError(f"loggers: {name!r} is not valid; choose from {list(LOGGERS)}")
        if name in REQUIREMENTS and importlib.util.find_spec(REQUIREMENTS[name][0]) is None:
            module, install = REQUIREMENTS[name]
            raise ImportError(f"--loggers {name}: the {module} package is not installed; {install}")


def open_loggers(names: Iterable[str], output_dir: Path, run: str, config: Mapping[str, Any] | None = None,
                 resume_step: int = 0) -> list[Any]:
    """Console first, then each named logger once (packages checked before any is opened)."""
    names = list(dict.fromkeys(("console", *names)))
    check_available(names)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    logged = LoggedRun(Path(output_dir), run, dict(config or {}), resume_step)
    return [LOGGERS[name](logged) for name in names]


def log_summary(names: Iterable[str], output_dir: Path, run: str, scalars: Mapping[str, float],
                text: str | None = None) -> None:
    """An evaluation's or a family's numbers to the loggers in `names`, in one go (opened and closed here)."""
    names = [name for name in names if name != "console"]  # the callers print their own tables
    if not names:
        return
    for logger in open_loggers(names, output_dir, run)[1:]:
        logger.summary(scalars, text)
        logger.close()
