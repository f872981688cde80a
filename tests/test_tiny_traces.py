"""Verbose reference traces: redundant lines that never change a value, lengths, the concise share."""

import random

import pytest

from ray_effreason.tasks.synthetic import (
    SyntheticArithmetic,
    count_tokens,
    expression_of,
    minimal_completion,
    trace_steps,
)
from ray_effreason.tiny_reasoner import build_tokenizer
from ray_effreason.tiny_traces import REDUNDANT_LINES, VerboseStyle, verbose_completion


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def test_task(tokenizer):
    return SyntheticArithmetic(split="test", num_examples=300, tokenizer=tokenizer)


def test_redundant_lines_end_with_the_step_above_and_keep_step_lines(test_task):
    rng = random.Random(1)
    for example in test_task.examples[:100]:
        minimal_lines = minimal_completion(example).split("\n")
        verbose_lines = verbose_completion(example, rng).split("\n")
        extra = [index for index, line in enumerate(verbose_lines) if line.split(" ")[0].rstrip(",:") in
                 {"check", "so", "wait"}]
        assert [line for index, line in enumerate(verbose_lines) if index not in extra] == minimal_lines
        steps = {f"{a}{op}{b}={c}" for a, op, b, c in trace_steps(expression_of(example))}
        for index in extra:  # the step just written (or repeated) ends every redundant line
            assert verbose_lines[index].endswith(verbose_lines[index - 1][-5:]) and verbose_lines[index][-5:] in steps


def test_verbose_traces_average_over_twice_minimal_with_wide_spread(tokenizer, test_task):
    rng = random.Random(2)
    verbose = count_tokens([verbose_completion(e, rng) for e in test_task.examples], tokenizer)
    ratio = sum(verbose) / sum(e.min_tokens for e in test_task.examples)
    assert ratio >= 2.3
    hardest = [n for n, e in zip(verbose, test_task.examples) if e.level == 6]
    mean = sum(hardest) / len(hardest)
    assert max(hardest) < 260 and min(hardest) < 0.7 * mean < 1.3 * mean < max(hardest)  # wide spread, bounded


def test_no_redundancy_style_gives_minimal_completion(test_task):
    style = VerboseStyle(redundancy_probability=0.0)
    for example in test_task.examples[:30]:
        assert verbose_completion(example, random.Random(0), style) == minimal_completion(example)


def test_concise_share_of_verbose_traces(test_task):
    examples = [example for example in test_task.examples if example.level >= 3][:100]
    rng = random.Random(3)
    always = VerboseStyle(concise_probability=1.0)
    assert all(verbose_completion(example, rng, always) == minimal_completion(example) for example in examples)
    default = VerboseStyle()
    draws = [verbose_completion(example, rng, default) == minimal_completion(example)
             for _ in range(10) for example in examples]
    # concise share plus the chance that every coin says stop: 0.1 + 0.9 * (1/6)^levels, >= 3 steps
    assert 0.06 < sum(draws) / len(draws) < 0.14


def test_each_redundancy_kind_appears():
    example = SyntheticArithmetic(num_examples=6).examples[5]
    rng = random.Random(0)
    text = "".join(verbose_completion(example, rng) for _ in range(20))
    assert all(word in text for word in ("check: ", "so far ", "wait, "))
    assert set(REDUNDANT_LINES) == {"check", "restate", "wait"}


def test_unknown_kind_or_bad_probability_raises_listing_valid():
    with pytest.raises(ValueError, match="restate"):
        VerboseStyle(kinds=("ponder",))
    with pytest.raises(ValueError, match="concise_probability"):
        VerboseStyle(concise_probability=1.5)
