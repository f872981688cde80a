"""NuminaMath-CoT training prompts (paper §3): problem -> prompt, gold = last \\boxed{} of `solution`.

The paper trains on the first 3,200 rows of a pre-filtered split of `AI-MO/NuminaMath-CoT` whose
answers are "easily parsed"; the filter itself is not published. Here every row whose solution has no
usable last box (none, empty, or too complex for the verifier's pre-checks) is dropped and counted in
`rows_without_answer`; picking the first 3,200 is the trainer's job. Answers are not sympy-parsed at
load time (100k rows at ~100/s would take 15 minutes); an unparseable gold grades None.
"""

from __future__ import annotations

from typing import Any

from ray_effreason.tasks.base import MATH_INSTRUCTION, Example, Task, example_id, load_examples, load_hf_rows
from ray_effreason.verifiers import check_math, clean_answer, extract_last_boxed, too_complex


def gold_from_solution(solution: str) -> str | None:
    """The last boxed answer of a reference solution, or None when it has no usable one.

    >>> gold_from_solution("so $x = \\\\boxed{\\\\frac{1}{2}}$."), gold_from_solution("no box")
    ('\\\\frac{1}{2}', None)
    """
    boxed = extract_last_boxed(solution)
    if boxed is None or not clean_answer(boxed) or too_complex(clean_answer(boxed)):
        return None
    return boxed.strip()


class NuminaMath(Task):
    name = "numina_math"
    hub_id = "AI-MO/NuminaMath-CoT"
    eval_split = "train"  # a training set: its prompts are its train split
    eval_tasks = ("math500",)  # what the sweep evaluates a NuminaMath-trained family on

    def __init__(self, path=None, split: str | None = None, skip_bad_rows: bool = False):
        super().__init__(path, split, skip_bad_rows)
        self.rows_without_answer = 0

    def _example_from_row(self, row: dict[str, Any], index: int) -> Example | None:
        gold = gold_from_solution(row["solution"])
        if gold is None:
            self.rows_without_answer += 1
            return None
        return Example(id=example_id("numina_math", self.split, index),
                       prompt=row["problem"].strip() + "\n" + MATH_INSTRUCTION, gold=gold,
                       reference=row["solution"])

    def _load(self) -> list[Example]:
        self.rows_without_answer = 0
        return load_examples(self, ("problem", "solution"), self._example_from_row,
                             lambda: load_hf_rows(self.hub_id, None, self.split))

    def grade(self, completion: str, example: Example) -> bool | None:
        return check_math(completion, example.gold)
