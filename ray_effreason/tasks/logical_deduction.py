"""Logical Deduction from BIG-Bench-Hard: order 3, 5 or 7 objects; 250 problems each, 750 in all.

PAPER.md §4: the paper averages over "Logical Deduction" (BIG-bench) without a protocol; the BBH
subset is what is available (shared/data/README.md). The level is the number of objects. The BBH
input already ends with its "Options:" block; we append the multiple-choice instruction.
Canary: BIG-bench data must never be trained on.
"""

from __future__ import annotations

import re
from typing import Any

from ray_effreason.tasks.base import CHOICE_INSTRUCTION, ChoiceTask, Example, load_examples, load_hf_rows
from ray_effreason.verifiers import default_labels

CONFIGS = {3: "logical_deduction_three_objects", 5: "logical_deduction_five_objects",
           7: "logical_deduction_seven_objects"}
_OPTION = re.compile(r"^\(([A-G])\)\s*(.+?)\s*$", re.MULTILINE)


def example_from_row(row: dict[str, Any], index: int) -> Example:
    """A local row (choices, target_label, num_objects) or a hub row (input, target "(A)")."""
    options = _OPTION.findall(row["input"].split("Options:", 1)[-1])
    choices = tuple(row["choices"]) if "choices" in row else tuple(text for _, text in options)
    labels = default_labels(len(choices))
    if not choices or tuple(label for label, _ in options) != labels:
        raise ValueError("input has no well-formed 'Options:' block (A), (B), ...")
    gold = str(row.get("target_label") or row["target"]).strip().strip("()")
    if gold not in labels:
        raise ValueError(f"target {gold!r} is not one of {labels}")
    level = int(row.get("num_objects", len(choices)))
    identifier = row.get("id")
    return Example(id=f"{CONFIGS.get(level, 'logical_deduction')}-{index}" if identifier is None else str(identifier),
                   prompt=row["input"].strip() + "\n" + CHOICE_INSTRUCTION, gold=gold, level=level, choices=choices)


class LogicalDeduction(ChoiceTask):
    """`path`: one BBH JSONL file, or a directory with all three (`logical_deduction_*_objects.jsonl`)."""

    name = "logical_deduction"
    hub_id = "lukaemon/bbh"
    data_subdir = "bbh_logical_deduction"
    eval_samples = 1  # ours: not in the paper

    def _load(self) -> list[Example]:
        files = None
        if self.path is not None and self.path.is_dir():
            files = [self.path / f"{config}.jsonl" for config in CONFIGS.values()]
        return load_examples(self, ("input", "target"), example_from_row, self._hf_rows, files)

    def _hf_rows(self) -> list[dict[str, Any]]:
        # lukaemon/bbh has one "test" split per config; the index restarts per config, as in the files
        return [dict(row, num_objects=objects, id=f"{config}-{index}")
                for objects, config in CONFIGS.items()
                for index, row in enumerate(load_hf_rows(self.hub_id, config, "test"))]


