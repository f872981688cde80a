"""The verifier actor's grading settings reach the grader: --grade-timeout-s and --answer-extraction."""

from ray_effreason.actors.verifier import VerifierWorker
from ray_effreason.tasks.base import Example, MathTask


class Equation(MathTask):
    name = "equation"

    def _load(self) -> list[Example]:
        return [Example(id="e-0", prompt="simplify 1/sqrt(2)", gold="\\frac{1}{\\sqrt{2}}")]


def test_grade_timeout_reaches_the_sympy_comparison():
    # this pair needs sympy (no fast path decides it): at 30 s it is equal, at a microsecond it times out
    task = Equation()
    example = task.examples[0]
    patient = VerifierWorker(task, timeout_s=30.0)
    assert patient.grade([("\\boxed{\\sqrt{2}/2}", example, "stop")])[0].correct
    hasty = VerifierWorker(task, timeout_s=1e-6)
    grade = hasty.grade([("\\boxed{\\sqrt{2}/2}", example, "stop")])[0]
    assert not grade.correct and grade.answer_correct is False  # timed out: not correct, never a stall


def test_answer_extraction_reaches_the_grader_and_truncation_still_wins():
    task = Equation()
    example = Example(id="e-1", prompt="?", gold="18")
    paper = VerifierWorker(task, extraction="paper")
    boxed = VerifierWorker(task)
    assert paper.grade([("The answer is 18.", example, "stop")])[0].correct
    assert not boxed.grade([("The answer is 18.", example, "stop")])[0].correct
    truncated = paper.grade([("The answer is 18.", example, "length")])[0]
    assert truncated.answer_correct and not truncated.correct  # no EOS: never correct for the reward
