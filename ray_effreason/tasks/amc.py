"""AMC 2023 (12A and 12B): the 40 problems of the Qwen2.5-Math evaluation, integer answers.

Not in the paper's own evaluation (PAPER.md §4); included as a mid-difficulty math benchmark.
Hub source `math-ai/amc23` stores the question as `question` and the answer as a float (27.0).
"""

from __future__ import annotations

from typing import Any

from ray_effreason.tasks.base import Example, MathTask, load_examples, load_hf_rows, math_prompt


def example_from_row(row: dict[str, Any], index: int) -> Example:
    answer = float(row["answer"])
    if not answer.is_integer():
        raise ValueError(f"AMC answer {row['answer']!r} is not an integer")
    problem = row["problem"] if "problem" in row else row["question"]
    identifier = row.get("id")
    return Example(id=f"amc23-{index}" if identifier is None else str(identifier),
                   prompt=math_prompt(problem), gold=str(int(answer)))


class AMC23(MathTask):
    name = "amc23"
    hub_id = "math-ai/amc23"
    data_subdir = "amc23"
    eval_samples = 4  # ours: not in the paper

    def _load(self) -> list[Example]:
        return load_examples(self, ("id", "problem", "answer"), example_from_row,
                             lambda: load_hf_rows(self.hub_id, None, self.split))

