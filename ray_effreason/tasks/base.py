"""What every task is: examples with a prompt and a gold answer, and a grader.

A task is a small picklable object (it is shipped to verifier actors), so it holds only plain data:
its name, where its rows come from, and the list of examples once loaded.

Grading is separate from reward (STYLE.md): `Task.grade` returns True/False, or None when the gold
answer itself cannot be parsed. Train and eval call the same `grade`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Example:
    """One problem. `prompt` is the user message (instruction + question), not yet chat-rendered."""

    id: str
    prompt: str
    gold: str
    level: int | None = None  # difficulty: MATH level 1-5, synthetic level, ...
    subject: str | None = None
    choices: tuple[str, ...] | None = None  # multiple choice: option texts, labels A, B, C, ...
    min_tokens: int | None = None  # synthetic only: tokens of the shortest correct trace
    reference: str | None = None  # a reference solution text when the source has one


class DataError(ValueError):
    """A malformed data row; the message names the file and line."""


@dataclass
class BadRows:
    """Rows skipped because the caller asked to skip bad rows: counted and reported, never silent."""

    count: int = 0
    messages: list[str] = field(default_factory=list)


def read_jsonl(path: str | Path, required: tuple[str, ...], skip_bad_rows: bool = False,
               bad_rows: BadRows | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line_number, row) from a JSONL file; a bad row raises DataError naming file:line.

    With skip_bad_rows=True, bad rows are counted into `bad_rows` instead of raising.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
                missing = [key for key in required if key not in row]
                if missing:
                    raise DataError(f"{path}:{line_number}: missing field(s) {missing}; has {sorted(row)}")
            except (json.JSONDecodeError, DataError) as error:
                message = str(error) if isinstance(error, DataError) else f"{path}:{line_number}: invalid JSON: {error}"
                if not skip_bad_rows:
                    raise DataError(message) from None
                if bad_rows is not None:
                    bad_rows.count += 1
                    bad_rows.messages.append(message)
                continue
            yield line_number, row


def render_prompt(user_message: str, tokenizer: Any | None) -> str:
    """The text a model is prompted with: the tokenizer's chat template when it has one.

    Paper §8: evaluation applies the chat template with add_generation_prompt=True (the R1-Distill
    template opens `<｜Assistant｜>` and newer revisions append `<think>\\n`). Without a chat template
    the raw user message is used.
    """
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True
        )
    return user_message


class Task:
    """Base class: subclasses set `name`, implement `_load()` and `grade()`."""

    name: str = "task"

    def __init__(self, path: str | Path | None = None, split: str = "test", skip_bad_rows: bool = False):
        self.path = Path(path) if path is not None else None
        self.split = split
        self.skip_bad_rows = skip_bad_rows
        self.bad_rows = BadRows()
        self._examples: list[Example] | None = None

    @property
    def examples(self) -> list[Example]:
        if self._examples is None:
            self._examples = self._load()
        return self._examples

    def __len__(self) -> int:
        return len(self.examples)

    def _load(self) -> list[Example]:
        raise NotImplementedError

    def grade(self, completion: str, example: Example) -> bool | None:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        # Ship the examples (plain frozen dataclasses) so actors need not re-read files.
        state = dict(self.__dict__)
        state["_examples"] = self.examples
        return state
