"""Verbose reference traces for the synthetic task: the SFT data that makes the tiny reasoner think too long.

The task (tasks/synthetic.py) defines problems, the minimal trace and grading; this module writes the
longer, still correct traces the tiny base reasoner is fine-tuned on (tiny_reasoner.sft_train), so
that RL with the length penalty has redundancy to remove.

Verbose traces. After each step line the writer decides, by a biased coin, whether to add one more
redundant line, and keeps deciding until the coin says no or `max_per_boundary` is reached; a
`concise_probability` share of traces has no redundant line at all. A
redundant line is one of the kinds reasoning models produce (paper §6 counts verification and
backtracking): a check ("check: 3+8=1"), a restatement ("so far 3+8=1") or a wait detour that
returns to the same value ("wait, is it 1? again 3+8=1"). The decision is the first token of the
next line (a digit or `</think>` goes on, `check`/`so`/`wait` adds redundancy), so RL can push its
probability down. A redundant line repeats the last step and ends with it, so it never changes a
value, hence never the answer, and the next step line reads the same local context as it would in
a minimal trace.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ray_effreason.tasks.base import Example
from ray_effreason.tasks.synthetic import expression_of, render_completion, step_line, trace_steps

# ---------------------------------------------------------------- redundant lines

def _check_line(step: tuple[str, str, str, str]) -> str:
    return f"check: {step_line(step)}"


def _restate_line(step: tuple[str, str, str, str]) -> str:
    return f"so far {step_line(step)}"


def _wait_line(step: tuple[str, str, str, str]) -> str:
    return f"wait, is it {step[3]}? again {step_line(step)}"


# Each redundant line repeats the step just written and ENDS with it, so (1) it can never change a
# value and (2) the next step line sees exactly the same last few tokens (`a op b=c` + newline) as
# in a minimal trace: the skills learned on minimal traces carry over to verbose ones unchanged.
REDUNDANT_LINES = {"check": _check_line, "restate": _restate_line, "wait": _wait_line}


@dataclass(frozen=True)
class VerboseStyle:
    """How verbose reference traces are sampled (defaults give ~2.7x the minimal length in tokens)."""

    # P(one more redundant line) at a step boundary, and P(a trace has no redundant line at all, like
    # the direct answers reasoning models sometimes give). With 5/6 and 0.1, "stop" and each of the 3
    # kinds are equally likely (1/4) at the first boundary, so the eval temperature 0.6 does not tilt
    # that first choice. Concise traces keep SFT (which learns minimal traces first, see
    # tiny_reasoner.sft_train) able to work without redundant lines; without them, RL that shortens
    # traces cost the base's accuracy at levels 5-6 (measured: 0.82/0.58 -> 0.34/0.28 at alpha 0.2).
    redundancy_probability: float = 5 / 6
    max_per_boundary: int = 2  # cap, so a level-6 verbose trace stays under ~200 tokens
    kinds: tuple[str, ...] = ("check", "restate", "wait")  # sampled uniformly
    concise_probability: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.concise_probability <= 1.0:
            raise ValueError(f"concise_probability must be in [0, 1], got {self.concise_probability}")
        if not 0.0 <= self.redundancy_probability < 1.0:
            raise ValueError(f"redundancy_probability must be in [0, 1), got {self.redundancy_probability}")
        if self.max_per_boundary < 0:
            raise ValueError(f"max_per_boundary must be >= 0, got {self.max_per_boundary}")
        unknown = [kind for kind in self.kinds if kind not in REDUNDANT_LINES]
        if unknown or not self.kinds:
            raise ValueError(f"unknown redundancy kinds {unknown}; valid: {sorted(REDUNDANT_LINES)}")


# ---------------------------------------------------------------- traces

def verbose_completion(example: Example, rng: random.Random, style: VerboseStyle = VerboseStyle()) -> str:
    """A correct completion with random redundant lines after step lines (same answer).

    >>> example = Example(id="x", prompt="Compute (3 + 8) mod 10.", gold="1")
    >>> verbose_completion(example, random.Random(0), VerboseStyle(redundancy_probability=0.0))
    '<think>\\n3+8=1\\n</think>\\n\\n\\\\boxed{1}'
    """
    lines: list[str] = []
    concise = style.concise_probability > 0 and rng.random() < style.concise_probability
    for step in trace_steps(expression_of(example)):
        lines.append(step_line(step))
        for _ in range(0 if concise else style.max_per_boundary):
            if rng.random() >= style.redundancy_probability:
                break
            lines.append(REDUNDANT_LINES[rng.choice(style.kinds)](step))
    return render_completion(expression_of(example), lines)
