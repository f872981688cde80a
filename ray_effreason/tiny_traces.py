"""Reference traces for the synthetic task: the SFT data that makes the tiny reasoner think too long.

The task (tasks/synthetic.py) defines problems, the minimal trace and grading; this module writes the
traces the tiny base reasoner is fine-tuned on (tiny_reasoner.sft_train). They mix three kinds of
extra or missing thinking, so that RL with the length penalty has something free to drop first and,
beyond it, tokens it can only buy with accuracy (issue 11, "thinking that pays"):

- **Redundant lines (pure waste).** After each line the writer decides, by a biased coin, whether to add
  one more redundant line, and keeps deciding until the coin says no or `max_per_boundary` is reached;
  a `concise_probability` share of traces has none. A redundant line is one of the kinds reasoning
  models produce (paper §6 counts verification and backtracking): a check ("check: 3+8=1"), a
  restatement ("so far 3+8=1") or a wait detour that returns to the same value ("wait, is it 1? again
  3+8=1"). It repeats the line above and ends with it, so it never changes a value, hence never the
  answer, and the next line reads the same local context as in a minimal trace.
- **A habit of length (overthinking easy problems).** The base thinks for about `habit_lines` lines
  whatever the problem, as reasoning models think long even on 2+3 (Chen et al. 2024, "Do NOT think
  that much for 2+3=?"): at the last line's boundary, while the think block is shorter than the habit,
  a coin (`habit_probability`) adds one more redundant line of the last line. Pure waste, most of it on
  the easy levels (a level-5 trace is past the habit already), and, like the redundancy of a long
  trace, one decision per line, so RL can drop it as fast. (Repeating the whole solution instead,
  `again: 3+8=1` rounds, broke the "a is the last digit written" rule the model relies on: measured,
  base accuracy fell from 96% to 58%.)
- **Merged lines (a shortcut that costs accuracy).** With `merge_probability` two consecutive operations
  are written as one line, `3+8-5=6`: two tokens fewer per pair of operations, but the model has to do
  a 4,000-entry lookup in one step instead of two 200-entry ones, and errs more often. A trace written
  with merged lines only is shorter than `min_tokens`, the one-operation-per-line floor.
- **Direct answers (trusting the hint).** With `direct_probability` the think block is empty and the box
  repeats the prompt's hint: a copy the tiny model learns at once, right with the task's
  `hint_accuracy(level)` (100% on level 1 down to 50% on level 6) and wrong otherwise, so this SFT trace
  is wrong whenever the hint is. This is where adaptive compute can show: RL may trust the hint on easy
  problems, where it is nearly always right, and keep thinking on hard ones.

Every choice is made at the first token of a line (a digit, `check`/`so`/`wait`, `</think>`) or of the
think block, so RL can move its probability. The careful line (one operation) is the extra thinking
that pays; redundancy is the thinking that does not.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ray_effreason.tasks.base import Example
from ray_effreason.tasks.synthetic import expression_of, hint_in, render_completion, trace_steps

# A trace line: (value before, the operations it applies, value after), e.g. ('3', '+8-5', '6').
Line = tuple[str, str, str]


def line_text(line: Line) -> str:
    """The line as the trace writes it.

    >>> line_text(('3', '+8-5', '6'))
    '3+8-5=6'
    """
    first, operations, result = line
    return f"{first}{operations}={result}"


def trace_lines(expression: str, rng: random.Random, merge_probability: float) -> list[Line]:
    """The expression's operations as lines, each pair of consecutive operations merged with `merge_probability`.

    >>> trace_lines("3+8-5+9", random.Random(0), 0.0)
    [('3', '+8', '1'), ('1', '-5', '6'), ('6', '+9', '5')]
    >>> trace_lines("3+8-5+9", random.Random(0), 1.0)
    [('3', '+8-5', '6'), ('6', '+9', '5')]
    """
    steps = [(first, operator + operand, result) for first, operator, operand, result in trace_steps(expression)]
    lines: list[Line] = []
    index = 0
    while index < len(steps):
        if index + 1 < len(steps) and merge_probability > 0 and rng.random() < merge_probability:
            (first, first_ops, _), (_, second_ops, result) = steps[index], steps[index + 1]
            lines.append((first, first_ops + second_ops, result))
            index += 2
        else:
            lines.append(steps[index])
            index += 1
    return lines


# ---------------------------------------------------------------- redundant lines

def _check_line(line: Line) -> str:
    return f"check: {line_text(line)}"


def _restate_line(line: Line) -> str:
    return f"so far {line_text(line)}"


def _wait_line(line: Line) -> str:
    return f"wait, is it {line[2]}? again {line_text(line)}"


# Each redundant line repeats the line just written and ENDS with it, so (1) it can never change a
# value and (2) the next line sees exactly the same last few tokens (`...op b=c` + newline) as in a
# minimal trace: the skills learned on minimal traces carry over to verbose ones unchanged.
REDUNDANT_LINES = {"check": _check_line, "restate": _restate_line, "wait": _wait_line}


@dataclass(frozen=True)
class VerboseStyle:
    """How reference traces are sampled (the defaults give ~3x the minimal length in tokens)."""

    # P(one more redundant line) at a line boundary, and P(a trace has no redundant line at all, like
    # the concise answers reasoning models sometimes give). With 5/6 and 0.1, "stop" and each of the 3
    # kinds are equally likely (1/4) at the first boundary, so the eval temperature 0.6 does not tilt
    # that first choice. Concise traces keep SFT (which learns minimal traces first, see
    # tiny_reasoner.sft_train) able to work without redundant lines; without them, RL that shortens
    # traces cost the base's accuracy at levels 5-6 (measured: 0.82/0.58 -> 0.34/0.28 at alpha 0.2).
    redundancy_probability: float = 5 / 6
    max_per_boundary: int = 2  # cap, so a level-6 verbose trace stays under ~200 tokens
    kinds: tuple[str, ...] = ("check", "restate", "wait")  # sampled uniformly
    concise_probability: float = 0.1
    merge_probability: float = 0.05  # P(two consecutive operations on one line): the shortcut that errs more
    # P(an empty think block and the hint boxed): the shortcut at the task's accuracy. Often enough that RL
    # sees it in most groups of 8 at temperature 1.0; at the eval temperature 0.6 the base rarely takes it.
    direct_probability: float = 0.1
    # P(one more redundant line at the last boundary) while the think block has fewer than `habit_lines`
    # lines (0: no habit).
    habit_probability: float = 0.9
    habit_lines: int = 10  # with 0.9: level-1 traces ~4.5x min_tokens, level-6 ones ~2.5x (measured on 600)

    def __post_init__(self) -> None:
        for name in ("concise_probability", "merge_probability", "direct_probability", "habit_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.redundancy_probability < 1.0:
            raise ValueError(f"redundancy_probability must be in [0, 1), got {self.redundancy_probability}")
        for name in ("max_per_boundary", "habit_lines"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        unknown = [kind for kind in self.kinds if kind not in REDUNDANT_LINES]
        if unknown or not self.kinds:
            raise ValueError(f"unknown redundancy kinds {unknown}; valid: {sorted(REDUNDANT_LINES)}")


MINIMAL = VerboseStyle(redundancy_probability=0.0, merge_probability=0.0, direct_probability=0.0, habit_lines=0)


# ---------------------------------------------------------------- traces

def verbose_completion(example: Example, rng: random.Random, style: VerboseStyle = VerboseStyle()) -> str:
    """A completion in `style`: maybe direct (the hint), maybe with merged lines, with random redundant lines.

    Correct unless it is direct and the hint is wrong.

    >>> example = Example(id="x", prompt="Compute (3 + 8) mod 10. Hint: 7.", gold="1")
    >>> verbose_completion(example, random.Random(0), MINIMAL)
    '<think>\\n3+8=1\\n</think>\\n\\n\\\\boxed{1}'
    >>> verbose_completion(example, random.Random(0), VerboseStyle(direct_probability=1.0))
    '<think>\\n</think>\\n\\n\\\\boxed{7}'
    """
    expression = expression_of(example)
    if style.direct_probability > 0 and rng.random() < style.direct_probability:
        return render_completion(expression, [], answer=hint_in(example))
    concise = style.concise_probability > 0 and rng.random() < style.concise_probability
    texts: list[str] = []

    def redundant(line: Line) -> str:
        return REDUNDANT_LINES[rng.choice(style.kinds)](line)

    lines = trace_lines(expression, rng, style.merge_probability)
    for line in lines:
        texts.append(line_text(line))
        for _ in range(0 if concise else style.max_per_boundary):
            if rng.random() >= style.redundancy_probability:
                break
            texts.append(redundant(line))
    while (not concise and len(texts) < style.habit_lines and style.habit_probability > 0
           and rng.random() < style.habit_probability):
        texts.append(redundant(lines[-1]))
    return render_completion(expression, texts)


def trace_profile(text: str) -> dict[str, int]:
    """Count what a synthetic completion is made of: operation lines, merged ones, redundant ones, direct.

    >>> trace_profile("<think>\\n3+8-5=6\\ncheck: 3+8-5=6\\n6+9=5\\n</think>\\n\\n\\\\boxed{5}")
    {'direct': 0, 'lines': 2, 'merged': 1, 'redundant': 1}
    >>> trace_profile("<think>\\n</think>\\n\\n\\\\boxed{5}")["direct"]
    1
    """
    think = text.split("</think>")[0].split("<think>")[-1]
    rows = [row for row in think.split("\n") if row.strip()]
    redundant = [row for row in rows if row.split(" ")[0].rstrip(",:") in ("check", "so", "wait")]
    operation_rows = [row for row in rows if row not in redundant]
    merged = [row for row in operation_rows if sum(row.split("=")[0].count(op) for op in "+-") >= 2]
    return {"direct": int("</think>" in text and not rows), "lines": len(operation_rows), "merged": len(merged),
            "redundant": len(redundant)}
