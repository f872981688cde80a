"""CommonsenseQA v1.11 (Talmor et al. 2019): 5-way multiple choice, graded on the validation split.

The test split's labels are not public, so its eval split is the validation
split: `tau/commonsense_qa` validation, 1221 questions (shared/data/commonsenseqa/validation.jsonl).
PAPER.md §4: the paper reports this dataset only in an average and gives no protocol; ours asks for
the letter in \\boxed{} and grades the last box (letter or option text).
"""

from __future__ import annotations

from typing import Any

from ray_effreason.tasks.base import (
    CHOICE_INSTRUCTION,
    ChoiceTask,
    Example,
    format_choices,
    load_examples,
    load_hf_rows,
)
from ray_effreason.verifiers import default_labels


def example_from_row(row: dict[str, Any], index: int) -> Example:  # noqa: ARG001  (the converters' signature)
    labels, texts = list(row["choices"]["label"]), list(row["choices"]["text"])
    if labels != list(default_labels(len(texts))):
        raise ValueError(f"choice labels {labels} are not A, B, C, ... in order")
    if row["answerKey"] not in labels:
        raise ValueError(f"answerKey {row['answerKey']!r} is not one of {labels}")
    prompt = row["question"].strip() + "\n" + format_choices(texts, labels) + "\n" + CHOICE_INSTRUCTION
    return Example(id=str(row["id"]), prompt=prompt, gold=row["answerKey"], choices=tuple(texts))


class CommonsenseQA(ChoiceTask):
    name = "commonsenseqa"
    hub_id = "tau/commonsense_qa"
    data_subdir = "commonsenseqa"
    eval_split = "validation"  # the test split's labels are not public
    eval_samples = 1  # ours: not in the paper

    def _load(self) -> list[Example]:
        return load_examples(self, ("id", "question", "choices", "answerKey"), example_from_row,
                             lambda: load_hf_rows(self.hub_id, None, self.split))

