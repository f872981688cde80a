"""GSM8K (Cobbe et al. 2021): grade-school word problems with an integer answer after `####`.

Paper §4: `openai/gsm8k`, `main` config, test split (1319 problems); the gold is the number after
"####" and the prediction the last \\boxed{} of the completion.
"""

from __future__ import annotations

from typing import Any

from ray_effreason.tasks.base import Example, MathTask, example_id, load_examples, load_hf_rows, math_prompt


def final_answer(solution: str) -> str:
    """The number after `####`, thousands separators removed.

    >>> final_answer("She makes 9 * 2 = $18.\\n#### 1,800")
    '1800'
    """
    if "####" not in solution:
        raise ValueError("answer has no '#### <number>' line")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def example_from_row(row: dict[str, Any], index: int, split: str = "test") -> Example:
    """A local row (question, answer, final) or a Hugging Face row (question, answer)."""
    gold = str(row["final"]).strip() if "final" in row else final_answer(row["answer"])
    if not gold.lstrip("-").isdigit():
        raise ValueError(f"gold answer {gold!r} is not an integer")
    return Example(id=example_id("gsm8k", split, index), prompt=math_prompt(row["question"]),
                   gold=gold, reference=row["answer"])


class GSM8K(MathTask):
    name = "gsm8k"
    hub_id, hub_config = "openai/gsm8k", "main"
    data_subdir = "gsm8k"
    eval_samples = 1  # PAPER.md §4

    def _load(self) -> list[Example]:
        return load_examples(self, ("question", "answer"), lambda row, index: example_from_row(row, index, self.split),
                             lambda: load_hf_rows(self.hub_id, self.hub_config, self.split))

