"""Reference traces: redundant lines that never change a value, merged lines that are still correct, direct
answers that box the prompt's hint (wrong exactly when the hint is), lengths, the concise share."""

import random

import pytest

from ray_effreason.tasks.synthetic import (
    SyntheticArithmetic,
    count_tokens,
    expression_of,
    hint_in,
    minimal_completion,
    trace_steps,
)
from ray_effreason.tiny_reasoner import build_tokenizer
from ray_effreason.tiny_traces import REDUNDANT_LINES, VerboseStyle, trace_profile, verbose_completion
from ray_effreason.verifiers import grade_math

REDUNDANCY_ONLY = VerboseStyle(merge_probability=0.0, direct_probability=0.0, habit_lines=0)


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
        verbose_lines = verbose_completion(example, rng, REDUNDANCY_ONLY).split("\n")
        extra = [index for index, line in enumerate(verbose_lines) if line.split(" ")[0].rstrip(",:") in
                 {"check", "so", "wait"}]
        assert [line for index, line in enumerate(verbose_lines) if index not in extra] == minimal_lines
        steps = {f"{a}{op}{b}={c}" for a, op, b, c in trace_steps(expression_of(example))}
        for index in extra:  # the step just written (or repeated) ends every redundant line
            assert verbose_lines[index].endswith(verbose_lines[index - 1][-5:]) and verbose_lines[index][-5:] in steps


def test_verbose_traces_average_over_twice_minimal_with_wide_spread(tokenizer, test_task):
    rng = random.Random(2)
    verbose = count_tokens([verbose_completion(e, rng, REDUNDANCY_ONLY) for e in test_task.examples], tokenizer)
    ratio = sum(verbose) / sum(e.min_tokens for e in test_task.examples)
    assert ratio >= 2.3
    shortcuts = count_tokens([verbose_completion(e, rng) for e in test_task.examples], tokenizer)
    assert sum(shortcuts) / sum(e.min_tokens for e in test_task.examples) >= 2.0  # the default style
    hardest = [n for n, e in zip(verbose, test_task.examples) if e.level == 6]
    mean = sum(hardest) / len(hardest)
    assert max(hardest) < 260 and min(hardest) < 0.7 * mean < 1.3 * mean < max(hardest)  # wide spread, bounded


def test_no_redundancy_style_gives_minimal_completion(test_task):
    style = VerboseStyle(redundancy_probability=0.0, habit_lines=0, direct_probability=0.0, merge_probability=0.0)
    for example in test_task.examples[:30]:
        assert verbose_completion(example, random.Random(0), style) == minimal_completion(example)


def test_concise_share_of_verbose_traces(test_task):
    examples = [example for example in test_task.examples if example.level >= 3][:100]
    rng = random.Random(3)
    always = VerboseStyle(concise_probability=1.0, merge_probability=0.0, direct_probability=0.0)  # rechecks too
    assert all(verbose_completion(example, rng, always) == minimal_completion(example) for example in examples)
    default = REDUNDANCY_ONLY
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


def test_thinking_traces_are_correct_direct_ones_box_the_hint_and_shortcuts_appear_at_their_rates(test_task):
    rng = random.Random(4)
    style = VerboseStyle(merge_probability=0.15, direct_probability=0.1)
    examples = test_task.examples * 4
    texts = [verbose_completion(example, rng, style) for example in examples]
    profiles = [trace_profile(text) for text in texts]
    for text, example, profile in zip(texts, examples, profiles):
        if profile["direct"]:
            assert text.endswith(f"\\boxed{{{hint_in(example)}}}")
            assert grade_math(text, example.gold) == (hint_in(example) == example.gold)
        else:
            assert grade_math(text, example.gold), text
    direct = sum(profile["direct"] for profile in profiles) / len(profiles)
    assert abs(direct - style.direct_probability) < 0.03
    wrong = sum(not grade_math(text, example.gold) for text, example in zip(texts, examples)) / len(texts)
    assert 0 < wrong < direct  # only a direct trace with a wrong hint
    # a merged line covers two operations; merges happen only where two operations are left
    lines = [profile for profile in profiles if not profile["direct"]]
    merged_share = sum(p["merged"] for p in lines) / sum(p["lines"] for p in lines)
    assert 0.1 < merged_share < 0.35


def test_merged_lines_apply_two_operations_and_shorten_the_trace_below_min_tokens(tokenizer, test_task):
    merged = VerboseStyle(redundancy_probability=0.0, merge_probability=1.0, direct_probability=0.0, habit_lines=0)
    examples = [example for example in test_task.examples if example.level == 6][:20]
    texts = [verbose_completion(example, random.Random(0), merged) for example in examples]
    assert all(trace_profile(text) == {"direct": 0, "lines": 3, "merged": 3, "redundant": 0} for text in texts)
    counts = count_tokens(texts, tokenizer)
    assert all(count == example.min_tokens - 12 for count, example in zip(counts, examples))  # 4 tokens per merge


def test_the_habit_pads_the_last_line_with_redundant_lines_mostly_on_easy_levels(tokenizer, test_task):
    style = VerboseStyle(merge_probability=0.0, direct_probability=0.0, max_per_boundary=0, concise_probability=0.0)
    rng = random.Random(5)
    ratios = {}
    for example in test_task.examples:
        text = verbose_completion(example, rng, style)
        minimal = minimal_completion(example).split("\n")[1:-3]  # the step lines
        think = text.split("</think>")[0].split("\n")[1:-1]
        assert think[:len(minimal)] == minimal and len(think) <= max(len(minimal), style.habit_lines)
        assert all(line.endswith(minimal[-1]) for line in think[len(minimal):])  # the last line, restated
        assert grade_math(text, example.gold) and trace_profile(text)["redundant"] == len(think) - len(minimal)
        ratios.setdefault(example.level, []).append(count_tokens([text], tokenizer)[0] / example.min_tokens)
    mean = {level: sum(values) / len(values) for level, values in ratios.items()}
    assert mean[1] > 3.0 and mean[1] > 1.8 * mean[6]  # level 1 is padded up to the habit, level 6 hardly
