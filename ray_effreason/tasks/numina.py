"""NuminaMath training prompts (paper §3): problem -> prompt, gold = last \\boxed{} of `solution`.

`numina_math` is the authors' public split, `daman1209arora/compression_dataset` (99,302 rows of the
MATH, cn_k12, AIME, AoPS and Olympiad subsets of NuminaMath-CoT, "easily parsed" problems, same
`problem`/`solution` fields); the paper trains on its first 3,200 rows (the trainer's `max_prompts`).
`numina_math_cot` is the full `AI-MO/NuminaMath-CoT`, whose source mix (gsm8k, orca_math, synthetic_*)
differs. The authors' filter itself is not published. Here every row whose solution has no
usable last box (none, empty, or too complex for the verifier's pre-checks) is dropped and counted in
`rows_without_answer`; picking the first 3,200 is the trainer's job. Answers are not sympy-parsed at
load time (100k rows at ~100/s would take 15 minutes); an unparseable gold grades None.
"""

from __future__ import annotations

from typing import Any

from ray_effreason.answer_extraction import extract_last_boxed
from ray_effreason.tasks.base import Example, MathTask, example_id, load_examples, load_hf_rows, math_prompt
from ray_effreason.verifiers import clean_answer, too_complex


def gold_from_solution(solution: str) -> str | None:
    """The last boxed answer of a reference solution, or None when it has no usable one.

    >>> gold_from_solution("so $x = \\\\boxed{\\\\frac{1}{2}}$."), gold_from_solution("no box")
    ('\\\\frac{1}{2}', None)
    """
    boxed = extract_last_boxed(solution)
    if boxed is None or not clean_answer(boxed) or too_complex(clean_answer(boxed)):
        return None
    return boxed.strip()


class NuminaMath(MathTask):
    name = "numina_math"
    hub_id = "daman1209arora/compression_dataset"  # the authors' split (PAPER.md §3)
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
                       prompt=math_prompt(row["problem"]), gold=gold,
                       reference=row["solution"])

    def _load(self) -> list[Example]:
        self.rows_without_answer = 0
        return load_examples(self, ("problem", "solution"), self._example_from_row,
                             lambda: load_hf_rows(self.hub_id, None, self.split))



class NuminaMathCoT(NuminaMath):
    """The whole NuminaMath-CoT (not the paper's data: another source mix); selectable by name."""

    name = "numina_math_cot"
    hub_id = "AI-MO/NuminaMath-CoT"
