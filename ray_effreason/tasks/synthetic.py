"""A built-in synthetic reasoning task: chains of single-digit operations modulo 10.

It exists so a newcomer can watch the paper's effect on a laptop in minutes: a tiny model that
"thinks too long" (it was fine-tuned on verbose traces) is RL-trained with the length penalty of
Arora & Zanette (2025, Eq. 1) and learns to think shorter at the same accuracy.

Problem. Level L has L+1 single-digit operands joined by `+`/`-`, no (operator, operand) pair twice;
the answer is the value mod 10:

    Compute (3 + 8 - 5 + 9) mod 10.

Minimal trace. One line per operation, `a op b=c`, where `a` is the running value:

    <think>
    3+8=1
    1-5=6
    6+9=5
    </think>

    \\boxed{5}

The format is chosen so each token is a small, local step for a tiny transformer: `c` is a lookup
in a 200-entry table of the three tokens just before `=`; `a` is the last digit written; `op b` is what
follows, in the prompt, the last `op b` of the trace (an induction-head copy; that is why pairs do not
repeat within a problem, and why the prompt spaces its operators, see `prompt_of`).

Hint. The prompt ends with a hint, `Compute (3 + 8 - 5 + 9) mod 10. Hint: 5.`, that is the answer with
probability `hint_accuracy(level)` (1 on level 1, 0.1 less per level, 0.5 on level 6: a hunch is
more often right on an easy problem) and another digit otherwise, fixed per problem by a hash.
Answering with the hint is the shortcut whose error rate the task sets, not the model's skill: the tiny
model cannot compute a long chain in one forward pass, but it can copy a digit, so "trust the hunch" (a
handful of tokens) against "work it out" (`min_tokens` and up) is a choice between a known accuracy and
a known length. Thinking pays by exactly `1 - hint_accuracy(level)` on each level, most on the hard
ones. (Added for issue 11: without it, the tiny model's own shortcuts were so inaccurate that RL dropped
them at every alpha and the family paid no price in accuracy; docs/sweep.md has the numbers, and those
of the hint's slope.)

Only the boxed answer is graded, so a completion may take shortcuts: the hint, two operations on one
line (`3+8-5=6`) or a guess. `min_tokens` is the length of the minimal trace above, the careful floor
(one operation per line); a shortcut trace can be shorter, and is wrong more often. The tiny reasoner's
SFT traces (tiny_traces.py, not a fact of the task) mix careful lines, shortcuts and pure redundancy, so
that RL has tokens to drop for free and tokens it can only buy with accuracy (issue 11).

Splits. A quarter of each level's problems, chosen by a hash of the expression, are test problems;
the rest are train problems, so the splits are disjoint by construction.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import random
import re
from pathlib import Path
from typing import Any, Sequence

from ray_effreason.tasks.base import DataError, Example, MathTask, read_jsonl

OPERATORS = ("+", "-")
TEST_BUCKETS = 4  # a quarter of the problems of each level are test problems
ENUMERATE_UP_TO = 100_000  # levels with at most this many problems are enumerated, larger ones sampled
DEFAULT_NUM_EXAMPLES = {"train": 10_000, "test": 300}
PROMPT_PATTERN = re.compile(r"Compute \(([0-9+\- ]+)\) mod 10\.")
HINT_PATTERN = re.compile(r"Hint: ([0-9])\.")


# ---------------------------------------------------------------- problems and traces

def trace_steps(expression: str) -> list[tuple[str, str, str, str]]:
    """The operations of the minimal trace as (a, op, b, c) with c = (a op b) mod 10.

    >>> trace_steps("3+8-5+9")
    [('3', '+', '8', '1'), ('1', '-', '5', '6'), ('6', '+', '9', '5')]
    """
    steps, value = [], expression[0]
    for operator, operand in zip(expression[1::2], expression[2::2]):
        result = int(value) + int(operand) if operator == "+" else int(value) - int(operand)
        steps.append((value, operator, operand, str(result % 10)))
        value = steps[-1][3]
    return steps


def answer_of(expression: str) -> str:
    """The value of the expression mod 10.

    >>> answer_of("3+8-5+9")
    '5'
    """
    return trace_steps(expression)[-1][3] if len(expression) > 1 else expression


def step_line(step: tuple[str, str, str, str]) -> str:
    first, operator, second, result = step
    return f"{first}{operator}{second}={result}"


def render_completion(expression: str, lines: Sequence[str], answer: str | None = None) -> str:
    """The chat completion (without EOS, which is a token the trainer appends): think block + box.

    The box holds `answer`, by default the value of the expression.
    """
    body = "".join(f"{line}\n" for line in lines)
    return f"<think>\n{body}</think>\n\n\\boxed{{{answer_of(expression) if answer is None else answer}}}"


def hint_accuracy(level: int) -> float:
    """P(the prompt's hint is the answer) on `level`: always on level 1, 0.1 less per level (0.5 on level 6).

    Its mean over the six levels (0.75) is set against the tiny reasoner's accuracy when it thinks at the
    *training* temperature 1.0 (measured on 600 train problems, format-7 base: 98 / 91 / 75 / 78 / 72 / 49% on
    levels 1-6, 0.77 on average, and about 0.9 after a few RL steps): under it, so correctness alone (alpha 0)
    and alpha <= 0.2 keep thinking; over what thinking earns once a large alpha discounts it (alpha 0.8), so
    trusting the hint is the price the family's end pays. docs/sweep.md ("third design") has the measured
    alternatives: 0.05 per level (mean 0.875, above the thinking accuracy) took the hint at every alpha, alpha 0
    included; 0.15 and 0.3 per level never took it, and the family paid no price.

    >>> [round(hint_accuracy(level), 2) for level in (1, 2, 3, 4, 5, 6, 12)]
    [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.2]
    """
    return max(0.2, min(1.0, 1.1 - 0.1 * level))


def hint_of(expression: str) -> str:
    """The hint the prompt gives: the answer with probability `hint_accuracy(level)`, else another digit.

    Fixed per problem (a hash of the expression), so a problem's prompt never changes.

    >>> answer_of("3+8-5+9"), hint_of("3+8-5+9"), hint_of("7-2+4-1+6")  # right, right, wrong
    ('5', '5', '3')
    """
    draw = _hash(f"hint:{expression}")
    answer = int(answer_of(expression))
    if (draw % 10_000) / 10_000 < hint_accuracy(len(expression) // 2):
        return str(answer)
    return str((answer + 1 + (draw // 10_000) % 9) % 10)


def prompt_of(expression: str) -> str:
    """The user message: the problem and its hint. Spaced operators (` +` is another token than the
    trace's `+`) keep the prompt's `op b` pairs apart from their copies in the trace, so "what follows
    this pair in the prompt" has one answer however often a verbose trace repeats a step.

    >>> prompt_of("3+8-5+9")
    'Compute (3 + 8 - 5 + 9) mod 10. Hint: 5.'
    """
    return f"Compute ({' '.join(expression)}) mod 10. Hint: {hint_of(expression)}."


def hint_in(example: Example) -> str | None:
    """The hint stated in the example's prompt (None for a prompt without one, e.g. a hand-written file)."""
    match = HINT_PATTERN.search(example.prompt)
    return None if match is None else match.group(1)


def expression_of(example: Example) -> str:
    """Recover the expression from the prompt (the prompt is the one place the problem lives)."""
    match = PROMPT_PATTERN.search(example.prompt)
    if match is None:
        raise ValueError(f"{example.id}: not a synthetic prompt: {example.prompt!r}")
    return match.group(1).replace(" ", "")


def minimal_completion(example: Example) -> str:
    """The shortest correct completion: one line per operation.

    >>> minimal_completion(Example(id="x", prompt="Compute (3 + 8 - 5 + 9) mod 10. Hint: 5.", gold="5"))
    '<think>\\n3+8=1\\n1-5=6\\n6+9=5\\n</think>\\n\\n\\\\boxed{5}'
    """
    expression = expression_of(example)
    return render_completion(expression, [step_line(step) for step in trace_steps(expression)])


def _hash(expression: str) -> int:
    return int.from_bytes(hashlib.sha1(expression.encode("ascii")).digest()[:8], "big")


def _level_size(level: int) -> int:
    return 10 ** (level + 1) * 2**level


@functools.lru_cache(maxsize=None)
def _small_level_test_set(level: int) -> frozenset[str]:
    # Exactly a quarter, by hash rank: level 1 has only 200 problems, and a plain hash bucket would
    # leave it a few short of the 50 a 300-problem test set asks for.
    ranked = sorted(_all_expressions(level), key=_hash)
    return frozenset(ranked[:len(ranked) // TEST_BUCKETS])


def split_of(expression: str) -> str:
    """"test" for a quarter of each level's problems (by a hash of the expression), else "train".

    >>> split_of("3+8-5+9"), split_of("3+8-0+9")
    ('train', 'test')
    """
    level = len(expression) // 2
    if _level_size(level) <= ENUMERATE_UP_TO:
        return "test" if expression in _small_level_test_set(level) else "train"
    return "test" if _hash(expression) % TEST_BUCKETS == 0 else "train"


def pairs_are_distinct(expression: str) -> bool:
    """No (operator, operand) pair twice, so "what follows `op b` in the prompt" is unambiguous.

    >>> pairs_are_distinct("3+8-5+9"), pairs_are_distinct("3+8-5+8")
    (True, False)
    """
    pairs = [expression[index:index + 2] for index in range(1, len(expression), 2)]
    return len(set(pairs)) == len(pairs)


def _random_expression(level: int, rng: random.Random) -> str:
    while True:
        parts = [str(rng.randrange(10))]
        for _ in range(level):
            parts += [rng.choice(OPERATORS), str(rng.randrange(10))]
        if pairs_are_distinct(expression := "".join(parts)):
            return expression


@functools.lru_cache(maxsize=None)
def _all_expressions(level: int) -> tuple[str, ...]:
    digits = "0123456789"
    pools = [digits] + [OPERATORS, digits] * level
    return tuple(expression for parts in itertools.product(*pools)
                 if pairs_are_distinct(expression := "".join(parts)))


def sample_expressions(level: int, split: str, count: int, rng: random.Random) -> list[str]:
    """`count` distinct problems of one level in one split; repeats only once the split's pool is used up."""
    if _level_size(level) <= ENUMERATE_UP_TO:
        pool = [expression for expression in _all_expressions(level) if split_of(expression) == split]
        rng.shuffle(pool)
        return [pool[index % len(pool)] for index in range(count)]
    chosen: dict[str, None] = {}  # insertion-ordered set
    while len(chosen) < count:
        expression = _random_expression(level, rng)
        if split_of(expression) == split:
            chosen.setdefault(expression)
    return list(chosen)


def count_tokens(texts: Sequence[str], tokenizer: Any) -> list[int]:
    """Tokens of each completion text plus one EOS, as a generator would count them (paper §4 avg_tokens)."""
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    eos = 1 if tokenizer.eos_token_id is not None else 0
    return [len(ids) + eos for ids in encoded]


# ---------------------------------------------------------------- the task

class SyntheticArithmetic(MathTask):
    """Chains of single-digit +/- modulo 10; gold is the digit; graded as a math task (the last box).

    >>> task = SyntheticArithmetic(split="test", num_examples=6, seed=0)
    >>> [example.level for example in task.examples]
    [1, 2, 3, 4, 5, 6]
    >>> task.grade(minimal_completion(task.examples[0]), task.examples[0])
    True
    """

    name = "synthetic"
    eval_samples = 1  # ours: the sweep's 300 test problems, one sample each

    def __init__(self, path: str | Path | None = None, split: str | None = None, skip_bad_rows: bool = False, *,
                 num_examples: int | None = None, levels: Sequence[int] = (1, 2, 3, 4, 5, 6), seed: int = 0,
                 tokenizer: Any | None = None):
        super().__init__(path, split, skip_bad_rows)
        if self.split not in DEFAULT_NUM_EXAMPLES:
            raise ValueError(f"unknown split {self.split!r}; valid: {sorted(DEFAULT_NUM_EXAMPLES)}")
        if not levels or any(level < 1 for level in levels):
            raise ValueError(f"levels must be a non-empty list of integers >= 1, got {levels}")
        self.num_examples = DEFAULT_NUM_EXAMPLES[self.split] if num_examples is None else num_examples
        self.levels = tuple(levels)
        self.seed = seed
        # The tokenizer is only used here, at load time; keeping it out of the state keeps the task
        # small and picklable (it is shipped to verifier actors).
        self._tokenizer = tokenizer

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_tokenizer"] = None
        return state

    def _load(self) -> list[Example]:
        examples = self._read() if self.path is not None else self._generate()
        if self._tokenizer is not None:
            counts = count_tokens([minimal_completion(example) for example in examples], self._tokenizer)
            examples = [_with_min_tokens(example, count) for example, count in zip(examples, counts)]
        return examples

    def _generate(self) -> list[Example]:
        # Balanced levels: example i has level levels[i % len(levels)].
        per_level = {level: sum(1 for index in range(self.num_examples)
                                if self.levels[index % len(self.levels)] == level) for level in self.levels}
        # A string seed is hashed with SHA-512 by `random`, so this is stable across processes.
        expressions = {level: sample_expressions(level, self.split, count,
                                                 random.Random(f"synthetic-{self.seed}-{self.split}-{level}"))
                       for level, count in per_level.items()}
        cursor = {level: 0 for level in self.levels}
        examples = []
        for index in range(self.num_examples):
            level = self.levels[index % len(self.levels)]
            expression = expressions[level][cursor[level]]
            cursor[level] += 1
            example = Example(id=f"synthetic-{self.split}-{self.seed}-{index}", prompt=prompt_of(expression),
                              gold=answer_of(expression), level=level)
            examples.append(_with_reference(example))
        return examples

    def _read(self) -> list[Example]:
        examples = []
        for line_number, row in read_jsonl(self.path, ("id", "prompt", "gold", "level"), self.skip_bad_rows,
                                           self.bad_rows):
            example = Example(id=str(row["id"]), prompt=row["prompt"], gold=str(row["gold"]), level=row["level"],
                              min_tokens=row.get("min_tokens"))
            try:
                if answer_of(expression_of(example)) != example.gold:
                    raise ValueError(f"gold {example.gold!r} is not the value of the expression")
            except ValueError as error:
                message = f"{self.path}:{line_number}: {error}"
                if not self.skip_bad_rows:
                    raise DataError(message) from None
                self.bad_rows.count += 1
                self.bad_rows.messages.append(message)
                continue
            examples.append(_with_reference(example))
        return examples



def _with_reference(example: Example) -> Example:
    return Example(**{**example.__dict__, "reference": minimal_completion(example)})


def _with_min_tokens(example: Example, min_tokens: int) -> Example:
    return Example(**{**example.__dict__, "min_tokens": min_tokens})


def write_examples(examples: Sequence[Example], path: str | Path) -> Path:
    """Save examples as JSONL that `SyntheticArithmetic(path=...)` reads back."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            row = {"id": example.id, "prompt": example.prompt, "gold": example.gold, "level": example.level,
                   "min_tokens": example.min_tokens}
            handle.write(json.dumps(row) + "\n")
    return path
