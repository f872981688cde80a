"""Answer equivalence: hand cases for every equivalence kind, and time bounds."""

import threading
import time

import pytest

from ray_effreason.verifiers import (
    check_math,
    clean_answer,
    grade_choice,
    grade_math,
    too_complex,
)


def boxed(answer: str) -> str:
    return "Some reasoning first.\nThe final answer is $\\boxed{" + answer + "}$."


def test_clean_answer_removes_wrappers_and_separators():
    assert clean_answer("\\text{Evelyn}.") == "Evelyn"
    assert clean_answer("10,\\!080") == "10080"
    assert clean_answer("5, 100") == "5, 100"  # a list of two numbers is not a thousands separator
    assert clean_answer("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}") == "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"


# ---------------------------------------------------------------- math equivalence

EQUIVALENT = [
    # (gold, prediction): one line per equivalence kind
    ("\\frac{14}{3}", "\\dfrac{14}{3}"),  # fraction macros
    ("\\frac{14}{3}", "14/3"),  # fraction spellings
    ("\\frac{14}{3}", "4\\frac{2}{3}"),  # mixed number (sympy)
    ("\\frac14", "0.25"),  # fraction vs decimal
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),  # radicals, rationalized
    ("2\\sqrt{5}", "\\sqrt{20}"),
    ("(-\\infty, 2) \\cup (3, \\infty)", "(3,\\infty)\\cup(-\\infty,2)"),  # intervals, union order
    ("[-2,7]", "x \\in [-2,7]"),
    ("\\{1\\pm\\sqrt{5},-2\\}", "-2, 1+\\sqrt5, 1-\\sqrt5"),  # sets, order and +-
    ("3, 5, 7", "7, 5, 3"),
    ("5", "x = 5"),  # equation vs value, both ways
    ("x=5", "5"),
    ("y = 2x + 3", "y = 3 + 2x"),
    ("30^\\circ", "30"),  # degrees, both ways
    ("30", "30^{\\circ}"),
    ("1000", "1,000"),  # thousands separators
    ("11,\\! 111,\\! 111,\\! 100", "11111111100"),
    ("73", "073"),  # leading zeros
    ("\\text{Evelyn}", "Evelyn"),  # \text{} wrappers
    ("\\text{(C)}", "C"),
    ("\\text{east}", "\\textbf{East}"),
    ("5.4 \\text{ cents}", "5.4"),  # units
    ("18", "18."),  # trailing period
    ("\\$18.90", "18.90"),  # currency
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("\\begin{pmatrix} -2 \\\\ -14 \\end{pmatrix}", "\\begin{pmatrix}-2\\\\-14\\end{pmatrix}"),
    ("p - q", "-q + p"),
    ("\\frac13", "0.333333"),  # math-verify's 6-digit float rounding
]

DIFFERENT = [
    ("\\frac{14}{3}", "\\frac{3}{14}"),
    ("2\\sqrt{5}", "\\sqrt{10}"),
    ("(3,4]", "[3,4]"),
    ("\\{1,2\\}", "\\{1,3\\}"),
    ("x=5", "6"),
    ("30^\\circ", "60"),
    ("5, 100", "5100"),
    ("73", "730"),
    ("\\text{east}", "\\text{west}"),
    ("\\text{(C)}", "B"),
    ("\\frac13", "0.3"),
    ("p - q", "q - p"),
]


@pytest.mark.parametrize(("gold", "prediction"), EQUIVALENT)
def test_grade_math_equivalent_forms_are_correct(gold, prediction):
    assert grade_math(boxed(prediction), gold)


@pytest.mark.parametrize(("gold", "prediction"), DIFFERENT)
def test_grade_math_different_answers_are_wrong(gold, prediction):
    assert not grade_math(boxed(prediction), gold)


def test_grade_math_grades_only_the_last_box():
    assert grade_math("\\boxed{3} no wait \\boxed{5}", "5")
    assert not grade_math("\\boxed{5} no wait \\boxed{3}", "5")
    assert not grade_math("\\boxed{3} \\boxed{5}", "3, 5")  # several boxes are not a set


def test_grade_math_uses_answer_after_think():
    assert grade_math("<think>maybe \\boxed{4}</think> The answer is \\boxed{5}.", "5")
    assert not grade_math("<think>maybe \\boxed{5}</think> The answer is \\boxed{4}.", "5")


def test_grade_math_without_a_box_or_with_an_empty_box_is_wrong():
    assert not grade_math("The answer is 5.", "5")
    assert not grade_math("\\boxed{}", "5")
    assert not grade_math("\\boxed{}", "\\frac{\\pi}{2}")


def test_check_math_unparseable_gold_is_none():
    assert check_math("\\boxed{5}", "") is None
    assert check_math("\\boxed{5}", "10^{10^{10}}") is None


# ---------------------------------------------------------------- time bounds

PATHOLOGICAL = [
    "1" * 100_000,  # 100k characters
    "{" * 5000 + "1" + "}" * 5000,  # thousands of nested braces
    "(" * 3000 + "1" + ")" * 3000,
    "10^{10^{10}}",  # a power tower sympy would try to evaluate
    "9**9**9**9",
    "2^{1000000000}",
    "(10^{10})!",
    "99999999!",
    "\\text{" * 20_000 + "1" + "}" * 20_000,  # nested wrappers (each unwrap is a linear scan)
]


@pytest.mark.parametrize("answer", PATHOLOGICAL, ids=lambda answer: answer[:12])
def test_pathological_answers_are_rejected_fast(answer):
    start = time.monotonic()
    assert too_complex(answer)
    assert grade_math("\\boxed{" + answer + "}", "5") is False
    assert grade_math("\\boxed{" + answer + "}", "\\frac{\\pi}{2}") is False
    assert time.monotonic() - start < 2.0


def test_pathological_answers_are_bounded_in_a_thread():
    results = []
    thread = threading.Thread(target=lambda: results.extend(
        grade_math("<think>" + "x" * 100_000 + "</think>\\boxed{" + answer + "}", "\\frac{\\pi}{2}")
        for answer in PATHOLOGICAL))
    start = time.monotonic()
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert results == [False] * len(PATHOLOGICAL)
    assert time.monotonic() - start < 10


def test_grade_math_from_threads_matches_main_thread():
    cases = EQUIVALENT[:8] + DIFFERENT[:8]
    expected = [grade_math(boxed(prediction), gold) for gold, prediction in cases]
    results = [None] * len(cases)

    def grade(index, gold, prediction):
        results[index] = grade_math(boxed(prediction), gold)

    threads = [threading.Thread(target=grade, args=(index, *case)) for index, case in enumerate(cases)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == expected == [True] * 8 + [False] * 8


# ---------------------------------------------------------------- multiple choice

CHOICES = ["bank", "library", "department store", "mall", "new york"]


@pytest.mark.parametrize("completion", [
    "\\boxed{B}", "\\boxed{(B)}", "\\boxed{\\text{B}}", "\\boxed{library}", "\\boxed{Library.}",
    "\\boxed{(B) library}", "\\boxed{A} on reflection \\boxed{B}", "So the answer is (B).", "Answer: B",
    "<think>\\boxed{A}</think> \\boxed{B}",
])
def test_grade_choice_accepts_the_gold_letter_or_option_text(completion):
    assert grade_choice(completion, "B", CHOICES)


@pytest.mark.parametrize("completion", [
    "\\boxed{C}", "\\boxed{bank}", "\\boxed{(B) library} wait \\boxed{A}", "\\boxed{Z}", "\\boxed{libraries}",
    "The answer is (C).", "I think library is nice", "",
])
def test_grade_choice_rejects_other_options_and_non_answers(completion):
    assert not grade_choice(completion, "B", CHOICES)


def test_grade_choice_is_fast_on_pathological_boxes():
    start = time.monotonic()
    for answer in PATHOLOGICAL:
        assert not grade_choice("\\boxed{" + answer + "}", "B", CHOICES)
    assert time.monotonic() - start < 2.0


def test_grade_choice_accepts_parenthesized_gold_and_custom_labels():
    assert grade_choice("\\boxed{(A)}", "(A)", ["yes", "no"])
    assert grade_choice("\\boxed{2}", "2", ["yes", "no"], labels=["1", "2"])
    assert grade_choice("\\boxed{no}", "Y", ["yes", "no"], labels=["X", "Y"])
