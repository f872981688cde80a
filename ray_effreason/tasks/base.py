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
from typing import Any, Callable, Iterable, Iterator

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def math_prompt(problem: str) -> str:
    """The paper's user message for a math problem, in training and in evaluation (PAPER.md §8).

    >>> math_prompt(" What is 2+2? ")
    'Please reason step by step, and put your final answer within \\\\boxed{}. Question: What is 2+2?'
    """
    return f"{MATH_INSTRUCTION} Question: {problem.strip()}"

# Multiple choice (CommonsenseQA, Logical Deduction): the paper gives no protocol (PAPER.md §4), so we
# mirror its math instruction and grade the last \\boxed{} like the math tasks.
CHOICE_INSTRUCTION = ("Please reason step by step, and put the letter of the correct option "
                      "within \\boxed{}.")


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


# PAPER.md §8, the training prompt: OpenRLHF's --input_template, without --apply_chat_template; the BOS is
# literal text and there is no `<think>\n` prefill (the model opens <think> itself). R1-Distill's tokens.
PAPER_TRAINING_TEMPLATE = "<｜begin▁of▁sentence｜><｜User｜>{}<｜Assistant｜>"


def _chat(user_message: str, tokenizer: Any | None) -> str:
    # Paper §8: evaluation applies the chat template with add_generation_prompt=True (the R1-Distill
    # template opens `<｜Assistant｜>`, and revisions from 2025-02-09 on append `<think>\n`).
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True)
    return user_message  # no chat template: the raw message (the tokenizer then adds its special tokens)


def _paper(user_message: str, tokenizer: Any | None) -> str:  # noqa: ARG001  (PROMPT_TEMPLATES' signature)
    return PAPER_TRAINING_TEMPLATE.format(user_message)


# --prompt-template: "chat" (the tokenizer's chat template: the paper's evaluation), "paper" (the paper's
# literal training string).
PROMPT_TEMPLATES = {"chat": _chat, "paper": _paper}


def render_prompt(user_message: str, tokenizer: Any | None, template: str = "chat") -> str:
    """The text a model is prompted with, by `template` (PROMPT_TEMPLATES).

    >>> render_prompt("Q", None, "paper")
    '<｜begin▁of▁sentence｜><｜User｜>Q<｜Assistant｜>'
    """
    if template not in PROMPT_TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; valid: {sorted(PROMPT_TEMPLATES)}")
    return PROMPT_TEMPLATES[template](user_message, tokenizer)


def prompt_token_ids(user_message: str, tokenizer: Any, template: str = "chat") -> list[int]:
    """Rendered and tokenized. Special tokens are added only when the text has none of its own: a chat
    template writes its BOS, the paper's string holds it literally (tokenized with add_special_tokens=False)."""
    text = render_prompt(user_message, tokenizer, template)
    own_special_tokens = template == "paper" or bool(getattr(tokenizer, "chat_template", None))
    return tokenizer(text, add_special_tokens=not own_special_tokens)["input_ids"]


class Task:
    """Base class: subclasses set their facts below, implement `_load()` and `grade()`.

    A task's facts live on its class, nowhere else: evaluation, the sweep and the CLI read them.
    """

    name: str = "task"
    hub_id: str | None = None  # `datasets.load_dataset` id of the rows (the source when no path is given)
    hub_config: str | None = None
    data_subdir: str | None = None  # its folder under --data-dir (shared/data/README.md); None: generated
    eval_split: str = "test"  # the split a plain `load_task(name)` reads (evaluation's split)
    eval_samples: int = 1  # samples per problem in evaluation (PAPER.md §4: gsm8k 1, math500 3, aime2024 10)
    eval_tasks: tuple[str, ...] | None = None  # what a model trained on this task is evaluated on; None: itself

    def __init__(self, path: str | Path | None = None, split: str | None = None, skip_bad_rows: bool = False):
        self.path = Path(path) if path is not None else None
        self.split = self.eval_split if split is None else split
        self.skip_bad_rows = skip_bad_rows
        self.bad_rows = BadRows()
        self._examples: list[Example] | None = None

    @property
    def examples(self) -> list[Example]:
        if self._examples is None:
            self._examples = self._load()
        return self._examples

    @examples.setter
    def examples(self, examples: list[Example]) -> None:  # e.g. the same problems with a budget in each prompt
        self._examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def _load(self) -> list[Example]:
        raise NotImplementedError

    def grade(self, completion: str, example: Example, *, timeout_s: float = 5.0,
              extraction: str = "boxed") -> bool | None:
        """True/False, or None when the gold answer cannot be parsed. `timeout_s` bounds one grading
        (--grade-timeout-s); `extraction` is where the answer is read from (answer_extraction.EXTRACTIONS)."""
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        # Ship the examples (plain frozen dataclasses) so actors need not re-read files.
        state = dict(self.__dict__)
        state["_examples"] = self.examples
        return state


class MathTask(Task):
    """A task whose gold is a math answer: graded by `verifiers.check_math` (the last box, math-verify)."""

    def grade(self, completion: str, example: Example, *, timeout_s: float = 5.0,
              extraction: str = "boxed") -> bool | None:
        from ray_effreason.verifiers import check_math

        return check_math(completion, example.gold, timeout_s=timeout_s, extraction=extraction)


class ChoiceTask(Task):
    """Multiple choice: graded by `verifiers.grade_choice` (letter or option text; its own "answer is (X)"
    fallback, so `extraction` does not change it)."""

    def grade(self, completion: str, example: Example, *, timeout_s: float = 5.0,  # noqa: ARG002
              extraction: str = "boxed") -> bool | None:  # noqa: ARG002  (Task.grade's signature)
        from ray_effreason.verifiers import default_labels, grade_choice

        if example.choices is None or example.gold not in default_labels(len(example.choices)):
            return None
        return grade_choice(completion, example.gold, example.choices)


# ---------------------------------------------------------------- row loading shared by the tasks

RowConverter = Callable[[dict[str, Any], int], "Example | None"]


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
