"""MATH500 (Lightman et al. 2023): 500 MATH test problems, levels 1-5, seven subjects.

Paper §4 loads `di-zhang-fdu/MATH500`; `HuggingFaceH4/MATH-500` holds the same 500 problems with the
same fields (problem, solution, answer, subject, level, unique_id), as does shared/data/math500.
"""

from __future__ import annotations

from typing import Any

from ray_effreason.tasks.base import Example, MathTask, load_examples, load_hf_rows, math_prompt

FIELDS = ("problem", "solution", "answer", "subject", "level", "unique_id")


def example_from_row(row: dict[str, Any], index: int) -> Example:  # noqa: ARG001  (the converters' signature)
    level = int(row["level"])
    if not 1 <= level <= 5:
        raise ValueError(f"level {level} is not in 1..5")
    if not str(row["answer"]).strip():
        raise ValueError("empty answer")
    return Example(id=str(row["unique_id"]), prompt=math_prompt(row["problem"]),
                   gold=str(row["answer"]), level=level, subject=str(row["subject"]), reference=row["solution"])


class MATH500(MathTask):
    name = "math500"
    hub_id = "HuggingFaceH4/MATH-500"
    data_subdir = "math500"
    eval_samples = 3  # PAPER.md §4

    def _load(self) -> list[Example]:
        return load_examples(self, FIELDS, example_from_row, lambda: load_hf_rows(self.hub_id, None, self.split))

