"""AIME 2024 (I and II): 30 problems, integer answers 0-999.

Paper §4 uses a converted copy of `AI-MO/aimo-validation-aime` restricted to 2024, with golds such as
"073" or "104." that are compared numerically; here the gold is the integer ("73") and the grader
accepts leading zeros and a trailing period on either side. Hub source: `HuggingFaceH4/aime_2024`
(fields id, problem, solution, answer as a string).
"""

from __future__ import annotations

from typing import Any

from ray_effreason.tasks.base import Example, MathTask, load_examples, load_hf_rows, math_prompt


def example_from_row(row: dict[str, Any], index: int) -> Example:
    gold = str(int(str(row["answer"]).strip().rstrip(".")))  # "073" / 73 / "73." -> "73"
    if not 0 <= int(gold) <= 999:
        raise ValueError(f"AIME answer {gold} is not in 0..999")
    identifier = row.get("id")
    return Example(id=f"aime2024-{index}" if identifier is None else str(identifier),
                   prompt=math_prompt(row["problem"]), gold=gold, reference=row.get("solution"))


class AIME2024(MathTask):
    name = "aime2024"
    hub_id = "HuggingFaceH4/aime_2024"
    data_subdir = "aime2024"
    eval_samples = 10  # PAPER.md §4

    def _load(self) -> list[Example]:
        # the hub copy has a single "train" split holding the 30 problems
        return load_examples(self, ("id", "problem", "answer"), example_from_row,
                             lambda: load_hf_rows(self.hub_id, None, "train"))

