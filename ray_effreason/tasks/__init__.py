"""Benchmark and training tasks: `load_task(name)` and the row-loading helpers every task shares.

One file per dataset; each defines one `row -> Example` function used by BOTH sources, a local JSONL
file (formats in shared/data/README.md) and the Hugging Face hub (`datasets.load_dataset`), so the two
can never drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from ray_effreason.tasks.base import MATH_INSTRUCTION, DataError, Example, Task, read_jsonl, render_prompt

__all__ = ["CHOICE_INSTRUCTION", "Example", "MATH_INSTRUCTION", "Task", "TASK_NAMES", "load_task",
           "load_examples", "load_hf_rows", "render_prompt"]

# Multiple choice (CommonsenseQA, Logical Deduction): the paper gives no protocol (PAPER.md §4), so we
# mirror its math instruction and grade the last \boxed{} like the math tasks.
CHOICE_INSTRUCTION = ("Please reason step by step, and put the letter of the correct option "
                      "within \\boxed{}.")

TASK_NAMES = ("gsm8k", "math500", "aime2024", "amc23", "commonsenseqa", "logical_deduction", "numina_math",
              "synthetic")

RowConverter = Callable[[dict[str, Any], int], Example | None]


def load_task(name: str, path: str | Path | None = None, split: str = "test", skip_bad_rows: bool = False) -> Task:
    """The task called `name`, with its examples loaded (so a bad file or a missing dataset fails here).

    `path`: a JSONL file, or a directory holding `<split>.jsonl`; None loads from the Hugging Face hub.

    >>> load_task("imagenet")
    Traceback (most recent call last):
    ...
    ValueError: unknown task 'imagenet'; valid names: aime2024, amc23, commonsenseqa, gsm8k, logical_deduction, math500, numina_math, synthetic
    """
    # Imported here: each task module imports helpers from this package.
    from ray_effreason.tasks import aime, amc, commonsenseqa, gsm8k, logical_deduction, math500, numina

    def synthetic(**kwargs: Any) -> Task:
        from ray_effreason.tasks.synthetic import SyntheticArithmetic

        return SyntheticArithmetic(**kwargs)

    constructors = {
        "gsm8k": gsm8k.GSM8K,
        "math500": math500.MATH500,
        "aime2024": aime.AIME2024,
        "amc23": amc.AMC23,
        "commonsenseqa": commonsenseqa.CommonsenseQA,
        "logical_deduction": logical_deduction.LogicalDeduction,
        "numina_math": numina.NuminaMath,
        "synthetic": synthetic,
    }
    if name not in constructors:
        raise ValueError(f"unknown task {name!r}; valid names: {', '.join(sorted(constructors))}")
    task = constructors[name](path=path, split=split, skip_bad_rows=skip_bad_rows)
    task.examples  # noqa: B018  (load now: errors surface at load time, not mid-training)
    return task


def data_files(path: Path, split: str) -> list[Path]:
    """A file is itself; a directory means `<dir>/<split>.jsonl`."""
    if path.is_dir():
        return [path / f"{split}.jsonl"]
    return [path]


def load_examples(task: Task, required: tuple[str, ...], convert: RowConverter,
                  hf_rows: Callable[[], Iterable[dict[str, Any]]], files: list[Path] | None = None) -> list[Example]:
    """Rows -> examples from `files` (default: from `task.path`) or, without a path, from `hf_rows()`.

    `convert(row, index)` returns an Example, or None to drop a row on purpose (NuminaMath rows without
    a boxed answer); a row it cannot convert (KeyError/TypeError/ValueError) is a bad row: DataError
    naming file:line, or counted in `task.bad_rows` when `task.skip_bad_rows`.
    """
    if task.path is None:
        return [example for index, row in enumerate(hf_rows())
                if (example := _convert(task, convert, row, index, f"{task.name} (Hugging Face) row {index}"))]
    examples = []
    for file in files if files is not None else data_files(task.path, task.split):
        for line_number, row in read_jsonl(file, required, task.skip_bad_rows, task.bad_rows):
            example = _convert(task, convert, row, line_number - 1, f"{file}:{line_number}")
            if example is not None:
                examples.append(example)
    return examples


def _convert(task: Task, convert: RowConverter, row: dict[str, Any], index: int, where: str) -> Example | None:
    try:
        return convert(row, index)
    except (KeyError, TypeError, ValueError) as error:
        message = f"{where}: {type(error).__name__}: {error}"
        if not task.skip_bad_rows:
            raise DataError(message) from None
        task.bad_rows.count += 1
        task.bad_rows.messages.append(message)
        return None


def load_hf_rows(dataset: str, config: str | None = None, split: str = "test") -> list[dict[str, Any]]:
    """Rows of a Hugging Face dataset; a failure (offline, no such split) says what to do instead."""
    try:
        import datasets

        return list(datasets.load_dataset(dataset, config, split=split))
    except Exception as error:  # network, offline mode, missing config: all mean "use a local file"
        raise RuntimeError(
            f"could not load Hugging Face dataset {dataset!r} (config {config!r}, split {split!r}): "
            f"{type(error).__name__}: {error}. Pass path= to a local JSONL file instead "
            f"(see shared/data/README.md)."
        ) from error


def format_choices(choices: Iterable[str], labels: Iterable[str]) -> str:
    """`(A) bank` lines, the BBH "Options:" layout.

    >>> print(format_choices(["bank", "library"], "AB"))
    Options:
    (A) bank
    (B) library
    """
    return "Options:\n" + "\n".join(f"({label}) {choice}" for label, choice in zip(labels, choices))


def example_id(task_name: str, split: str, index: int) -> str:
    """`<task>-<index>` for the test split; other splits say theirs, so ids never collide across splits."""
    return f"{task_name}-{index}" if split == "test" else f"{task_name}-{split}-{index}"
