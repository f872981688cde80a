"""Benchmark and training tasks: one file per dataset, one dict (`TASKS`), `load_task(name)`.

Adding a dataset = one new file with its `Task` subclass (its facts on the class: hub id, data folder,
eval split and samples) + one entry here. Each file defines one `row -> Example` function used by BOTH
sources, a local JSONL file (formats in shared/data/README.md) and the Hugging Face hub, so the two
can never drift apart.
"""

from __future__ import annotations

from pathlib import Path

from ray_effreason.tasks.aime import AIME2024
from ray_effreason.tasks.amc import AMC23
from ray_effreason.tasks.base import CHOICE_INSTRUCTION, MATH_INSTRUCTION, DataError, Example, Task, render_prompt
from ray_effreason.tasks.commonsenseqa import CommonsenseQA
from ray_effreason.tasks.gsm8k import GSM8K
from ray_effreason.tasks.logical_deduction import LogicalDeduction
from ray_effreason.tasks.math500 import MATH500
from ray_effreason.tasks.numina import NuminaMath, NuminaMathCoT
from ray_effreason.tasks.synthetic import SyntheticArithmetic
from ray_effreason.tasks.task_set import TaskSet

__all__ = ["CHOICE_INSTRUCTION", "DataError", "Example", "MATH_INSTRUCTION", "TASKS", "Task", "TaskSet", "load_task",
           "parse_samples", "render_prompt", "task_class"]

TASKS: dict[str, type[Task]] = {
    "gsm8k": GSM8K,
    "math500": MATH500,
    "aime2024": AIME2024,
    "amc23": AMC23,
    "commonsenseqa": CommonsenseQA,
    "logical_deduction": LogicalDeduction,
    "numina_math": NuminaMath,
    "numina_math_cot": NuminaMathCoT,
    "synthetic": SyntheticArithmetic,
}


def task_class(name: str) -> type[Task]:
    """The Task class called `name`.

    >>> task_class("imagenet")
    Traceback (most recent call last):
    ...
    ValueError: unknown task 'imagenet'; valid names: aime2024, amc23, commonsenseqa, gsm8k, ...
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid names: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def load_task(name: str, path: str | Path | None = None, split: str | None = None, skip_bad_rows: bool = False,
              **options) -> Task:
    """The task called `name`, with its examples loaded (so a bad file or a missing dataset fails here).

    `path`: a JSONL file, or a directory holding `<split>.jsonl`; None loads from the Hugging Face hub
    (or generates, for the synthetic task). `split`: None is the task's `eval_split`. `options` go to the
    task's constructor (e.g. the synthetic task's `tokenizer`, which gives it `min_tokens`).
    """
    task = task_class(name)(path=path, split=split, skip_bad_rows=skip_bad_rows, **options)
    task.examples  # noqa: B018  (load now: errors surface at load time, not mid-training)
    return task


def parse_samples(value: str | int | dict[str, int] | None, tasks: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Samples per problem for each task: each task's `eval_samples`, overridden by an int or task=n pairs.

    >>> parse_samples(None, ["gsm8k", "aime2024"])
    {'gsm8k': 1, 'aime2024': 10}
    >>> parse_samples("2", ["gsm8k", "aime2024"]), parse_samples("aime2024=4", ["gsm8k", "aime2024"])
    ({'gsm8k': 2, 'aime2024': 2}, {'gsm8k': 1, 'aime2024': 4})
    >>> parse_samples("mmlu=3", ["gsm8k"])
    Traceback (most recent call last):
    ...
    ValueError: samples: 'mmlu' is not in tasks ['gsm8k']
    """
    samples = {task: task_class(task).eval_samples for task in tasks}
    if isinstance(value, str):
        value = value.strip()
        try:
            value = int(value) if "=" not in value else {
                name.strip(): int(count) for name, count in (pair.split("=", 1) for pair in value.split(",") if pair)}
        except ValueError:
            raise ValueError("samples: expected an int or task=n pairs like gsm8k=1,math500=3, "
                             f"got {value!r}") from None
    if isinstance(value, int):
        value = {task: value for task in tasks}
    for task, count in (value or {}).items():
        if task not in samples:
            raise ValueError(f"samples: {task!r} is not in tasks {list(tasks)}")
        if count <= 0:
            raise ValueError(f"samples: {task}={count} must be > 0")
        samples[task] = count
    return samples
