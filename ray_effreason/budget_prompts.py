"""Token budgets written into prompts: every wording the project uses, in one place (pure, no I/O).

    WORDINGS      name -> how a budget is stated around a task's user message:
                  "tale" the rebuttal's prompted-budget baseline (PAPER.md §9, TALE-style), "l1" L1's
                  training and evaluation sentence (cmu-l3/l1, scripts/data/deepscaler_dataset.py)
    state_budget  one prompt with its budget stated
    with_budget   a task's examples with one budget stated in each (EvalConfig.prompt_budget, eval_runner)

The budget is written into `Example.prompt`, the user message, before any chat template is applied, so a math
task keeps its own \\boxed{} instruction inside and the synthetic task's bare problem gets the same sentence.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

WORDINGS: dict[str, str] = {
    "tale": "Please think step by step and answer in less than {budget} tokens. Question: {prompt} Answer:",
    "l1": "{prompt} Think for maximum {budget} tokens.",
}


def state_budget(prompt: str, budget: int, wording: str) -> str:
    """`prompt` with a budget of `budget` tokens stated in `wording` (a WORDINGS name).

    >>> state_budget("Compute (3 + 8) mod 10.", 64, "tale")
    'Please think step by step and answer in less than 64 tokens. Question: Compute (3 + 8) mod 10. Answer:'
    >>> state_budget("Compute (3 + 8) mod 10.", 120, "l1")
    'Compute (3 + 8) mod 10. Think for maximum 120 tokens.'
    """
    if wording not in WORDINGS:
        raise ValueError(f"unknown budget wording {wording!r}; choose from {', '.join(WORDINGS)}")
    return WORDINGS[wording].format(budget=int(budget), prompt=prompt)


def with_budget(examples: Sequence[Any], budget: int, wording: str) -> list[Any]:
    """Each example (a dataclass with a `prompt`) with `budget` stated in its prompt; ids and answers unchanged."""
    return [dataclasses.replace(example, prompt=state_budget(example.prompt, budget, wording)) for example in examples]
