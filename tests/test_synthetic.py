"""The built-in synthetic task: deterministic, disjoint splits, exact min_tokens, gradable traces."""

import random
import re

import pytest

from ray_effreason.tasks.base import DataError
from ray_effreason.tasks.synthetic import (
    SyntheticArithmetic,
    expression_of,
    hint_accuracy,
    hint_in,
    hint_of,
    minimal_completion,
    prompt_of,
    split_of,
    trace_steps,
    write_examples,
)
from ray_effreason.tiny_reasoner import build_tokenizer
from ray_effreason.tiny_traces import VerboseStyle, verbose_completion


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def test_task(tokenizer):
    return SyntheticArithmetic(split="test", num_examples=300, tokenizer=tokenizer)


def test_same_seed_same_examples_other_seed_differs():
    first = SyntheticArithmetic(split="train", num_examples=120, seed=3).examples
    again = SyntheticArithmetic(split="train", num_examples=120, seed=3).examples
    other = SyntheticArithmetic(split="train", num_examples=120, seed=4).examples
    assert first == again
    assert [e.prompt for e in first] != [e.prompt for e in other]


def test_train_and_test_problems_disjoint():
    train = {e.prompt for e in SyntheticArithmetic(split="train", num_examples=6000, seed=1).examples}
    test = {e.prompt for e in SyntheticArithmetic(split="test", num_examples=600, seed=2).examples}
    assert train and test and not train & test
    # Level 1 (200 problems in all) is the crowded one: both splits still draw from their own part.
    assert {p for p in train if len(expression_of_prompt(p)) == 3}
    assert {p for p in test if len(expression_of_prompt(p)) == 3}


def expression_of_prompt(prompt):
    return re.search(r"\((.*)\)", prompt).group(1).replace(" ", "")


def test_split_of_is_a_quarter_test():
    expressions = [f"{a}{op}{b}{op2}{c}" for a in range(10) for b in range(10) for c in range(10)
                   for op in "+-" for op2 in "+-"]
    share = sum(split_of(e) == "test" for e in expressions) / len(expressions)
    assert 0.2 < share < 0.3


def test_examples_within_a_level_are_distinct():
    examples = SyntheticArithmetic(split="test", num_examples=300).examples
    for level in range(1, 7):
        prompts = [e.prompt for e in examples if e.level == level]
        assert len(prompts) == 50 and len(set(prompts)) == 50


def test_min_tokens_is_token_count_of_minimal_completion_plus_eos(tokenizer, test_task):
    for example in test_task.examples[:60]:
        ids = tokenizer(minimal_completion(example), add_special_tokens=False)["input_ids"]
        assert example.min_tokens == len(ids) + 1  # + EOS
        assert tokenizer.decode(ids) == minimal_completion(example)


def test_min_tokens_none_without_tokenizer():
    assert all(e.min_tokens is None for e in SyntheticArithmetic(num_examples=12).examples)


def test_every_reference_trace_grades_correct(test_task):
    rng = random.Random(0)
    thinking = VerboseStyle(direct_probability=0.0)  # a direct answer boxes the hint (test_tiny_traces)
    for example in test_task.examples:
        assert test_task.grade(minimal_completion(example), example) is True
        assert test_task.grade(example.reference, example) is True
        for _ in range(3):
            assert test_task.grade(verbose_completion(example, rng, thinking), example) is True


def test_hint_is_right_at_the_levels_rate_fixed_per_problem_and_a_digit():
    examples = SyntheticArithmetic(split="train", num_examples=6000, seed=0).examples
    for level in range(1, 7):
        at_level = [example for example in examples if example.level == level]
        right = sum(hint_in(example) == example.gold for example in at_level) / len(at_level)
        rate = hint_accuracy(level)  # a hash draws each problem's hint: within 4 standard errors of the rate
        assert abs(right - rate) <= 4 * (rate * (1 - rate) / len(at_level)) ** 0.5, (level, right, len(at_level))
    assert all(hint_in(example) in "0123456789" for example in examples)
    again = SyntheticArithmetic(split="train", num_examples=600, seed=0).examples
    assert [e.prompt for e in again] == [e.prompt for e in examples[:600]]  # the hint is part of the problem
    assert prompt_of("3+8") == f"Compute (3 + 8) mod 10. Hint: {hint_of('3+8')}."
    assert expression_of(examples[0]) in examples[0].prompt.replace(" ", "")


def test_wrong_answer_grades_false(test_task):
    for example in test_task.examples[:50]:
        wrong = str((int(example.gold) + 1) % 10)
        completion = minimal_completion(example).replace(f"\\boxed{{{example.gold}}}", f"\\boxed{{{wrong}}}")
        assert test_task.grade(completion, example) is False
        assert test_task.grade(minimal_completion(example).split("</think>")[0], example) is False  # no box


def test_higher_level_needs_more_steps_and_tokens(test_task):
    by_level = {}
    for example in test_task.examples:
        by_level.setdefault(example.level, set()).add((len(trace_steps(expression_of(example))), example.min_tokens))
    for level, pairs in by_level.items():
        assert {steps for steps, _ in pairs} == {level}
    mean_min = [sum(t for _, t in by_level[level]) / len(by_level[level]) for level in sorted(by_level)]
    assert mean_min == sorted(mean_min) and mean_min[0] < mean_min[-1]


def test_unknown_split_raises_listing_valid():
    with pytest.raises(ValueError, match="train"):
        SyntheticArithmetic(split="validation")


def test_jsonl_round_trip_and_bad_gold(tmp_path, tokenizer):
    task = SyntheticArithmetic(split="test", num_examples=20, tokenizer=tokenizer)
    path = write_examples(task.examples, tmp_path / "synthetic.jsonl")
    assert SyntheticArithmetic(path, tokenizer=tokenizer).examples == task.examples
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(f'"gold": "{task.examples[3].gold}"',
                                f'"gold": "{(int(task.examples[3].gold) + 1) % 10}"')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=":4:"):
        _ = SyntheticArithmetic(path).examples
    skipping = SyntheticArithmetic(path, skip_bad_rows=True)
    assert len(skipping.examples) == 19 and skipping.bad_rows.count == 1


def test_task_pickles_without_tokenizer(tokenizer):
    import pickle

    task = SyntheticArithmetic(num_examples=6, tokenizer=tokenizer)
    clone = pickle.loads(pickle.dumps(task))
    assert clone.examples == task.examples and clone._tokenizer is None
