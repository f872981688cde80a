"""Answer equivalence: is a completion's final answer the gold answer?

The answer is read by answer_extraction.py (the LAST `\\boxed{...}`, or the paper's evaluation fallbacks;
`EXTRACTIONS`). A completion with no answer is wrong. Equivalence is decided in three tiers, cheapest first:

1. Normalized string match (spaces, `\\left`/`\\right`, `\\dfrac`, degrees, `\\%`, `\\text{}` wrappers,
   trailing periods, thousands separators removed): equal keys are correct without sympy.
2. Exact numbers (integers, decimals, fractions, leading zeros) compared with `fractions.Fraction`;
   word answers (`\\text{Evelyn}`, `\\text{(C)}`) compared case-insensitively. Both are decisive, and
   they settle GSM8K, AIME and AMC completely and most of MATH500.
3. Everything else goes to math-verify (sympy), parsing ONLY the extracted last box. math-verify on
   a whole completion would treat several boxes as a set; the paper grades the last one.

Time limits. math-verify's own timeouts use `signal.alarm`, which raises outside the main thread,
and Ray actors run methods in threads. So tier 3 runs in a `sympy_pool.SympyWorkerPool`: persistent
worker processes with a hard per-comparison limit (see sympy_pool.py for why processes, and how a
hang is stopped). The grading code here is pure; it is handed the pool (`pool=`, this process's
`sympy_pool.default_pool()` when none is given). Cheap pre-checks (length, nesting depth, numeric
power towers, huge exponents and factorials) reject pathological answers before they reach a
worker, so the common path never pays a timeout and a restart.

Departures from the paper's grader (Qwen `math_equal`): equivalence is math-verify's; a `\\%` sign is
dropped rather than also accepting gold/100 and gold*100; `\\fbox` and `\\boxed 5` count as boxes.
"""

from __future__ import annotations

import math
import re
import string
from fractions import Fraction
from typing import Sequence

from ray_effreason.answer_extraction import EXTRACTIONS, brace_content, extract_last_boxed
from ray_effreason.sympy_pool import SympyWorkerPool, default_pool

# ---------------------------------------------------------------- normalization

_TEXT_COMMANDS = r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)"
_WHOLE_TEXT = re.compile(_TEXT_COMMANDS + r"\s*\{(.*)\}", re.DOTALL)
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_NEGATIVE_SPACE = re.compile(r"(?<!\\)\\!\s*")  # `10,\!080`; the lookbehind keeps `\\` (a row break)
_SPACING = re.compile(r"(?<!\\)\\[,;: ]")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_INTEGER = re.compile(r"-?\d+")
_DECIMAL = re.compile(r"-?\d*\.\d+")
_FRACTIONS = (
    re.compile(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}"),
    re.compile(r"(-?)\\frac(\d)(\d)"),
    re.compile(r"(-?)\\frac(\d)\{(\d+)\}"),
    re.compile(r"(-?)\\frac\{(\d+)\}(\d)"),
    re.compile(r"(-?)(\d+)/(\d+)"),
)
_CHOICE_LETTER = re.compile(r"\(?([A-Z])\)?")
_WORDS = re.compile(r"[A-Za-z][A-Za-z '\-]*")


def _unwrap_text(answer: str) -> tuple[str, bool]:
    """`\\text{...}` around the WHOLE answer removed (repeatedly); also says whether there was one."""
    wrapped = False
    while True:
        match = _WHOLE_TEXT.fullmatch(answer)
        if not match or brace_content(answer, answer.index("{")) != match.group(1):
            return answer, wrapped
        answer, wrapped = match.group(1).strip(), True


def clean_answer(answer: str) -> str:
    """Semantics-preserving cleanup applied to gold and prediction before any comparison.

    >>> clean_answer("\\\\$32,\\\\!348.")
    '32348'
    >>> clean_answer("\\\\left( 3, \\\\dfrac{\\\\pi}{2} \\\\right)")
    '( 3, \\\\frac{\\\\pi}{2} )'
    >>> clean_answer("30^\\\\circ")
    '30'
    """
    answer = answer.strip().replace("\\$", "").replace("$", "")
    answer = _SPACING.sub(" ", _NEGATIVE_SPACE.sub("", answer))
    answer = answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    answer = _LEFT_RIGHT.sub("", answer)
    answer = _DEGREES.sub("", answer).replace("\\%", "").replace("%", "")
    answer = answer.strip().rstrip(".").strip()
    answer, _ = _unwrap_text(answer)
    answer = answer.rstrip(".").strip()
    if _THOUSANDS.fullmatch(answer):  # "58,500" but not "5, 100" (a list of two numbers)
        answer = answer.replace(",", "")
    return answer


def _comparison_key(cleaned: str) -> str:
    return "".join(cleaned.split())


def _as_number(cleaned: str) -> tuple[Fraction, bool] | None:
    """(value, exact) for plain numbers; exact is False for decimals (math-verify rounds those)."""
    text = _comparison_key(cleaned)
    if _INTEGER.fullmatch(text):
        return Fraction(int(text)), True
    if _DECIMAL.fullmatch(text):
        return Fraction(text), False
    for pattern in _FRACTIONS:
        match = pattern.fullmatch(text)
        if match and int(match.group(3)) != 0:
            sign = -1 if match.group(1) else 1
            return sign * Fraction(int(match.group(2)), int(match.group(3))), True
    return None


def _as_words(answer: str) -> str | None:
    """A word or choice-letter answer (`\\text{Evelyn}`, `\\text{(C)}`), lower-cased; else None."""
    unwrapped, wrapped = _unwrap_text(answer.strip().replace("$", "").rstrip(".").strip())
    unwrapped = unwrapped.rstrip(".").strip()
    letter = _CHOICE_LETTER.fullmatch(unwrapped)
    if letter and (wrapped or unwrapped.startswith("(")):
        return letter.group(1).lower()
    if wrapped and _WORDS.fullmatch(unwrapped):
        return " ".join(unwrapped.lower().split())
    return None


# ---------------------------------------------------------------- pre-checks

MAX_ANSWER_CHARS = 1000  # MATH500's longest gold is ~60 characters; a matrix answer fits easily
MAX_NESTING = 24  # braces/brackets/parentheses; MATH500 golds nest at most 4 deep
MAX_EXPONENT = 100_000  # sympy computes 2^100000 in ~0.2 s; 10^(10^10) never finishes
MAX_FACTORIAL = 10_000
_NUMERIC_TOWER = re.compile(r"(\d+)\s*(?:\^|\*\*)\s*\{?\s*(\d+)\s*\}?\s*(?:\^|\*\*)\s*\{?\s*(\d+)")
_LITERAL_EXPONENT = re.compile(r"(?:\^|\*\*)\s*\{?\s*(\d+)")
_LITERAL_FACTORIAL = re.compile(r"(\d+)\s*!")
_GROUP_FACTORIAL = re.compile(r"[)}]\s*!")


def _max_nesting(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "})]":
            depth = max(depth - 1, 0)
    return deepest


MAX_POWER_NESTING = 3  # x^{y^{z}}: MATH500's golds nest powers at most twice
# An answer holding an unevaluated integral, sum, product or limit is not a final answer, and sympy may spend
# its whole time limit evaluating one (measured: 1 s per item, tests/test_bad_input.py); no benchmark gold has one.
_CALCULUS = re.compile(r"\\(?:int|iint|oint|sum|prod|lim)(?![A-Za-z])")


def _power_nesting(text: str) -> int:
    """How deeply exponent groups `^{...}` nest (`x^{x^{2}}` is 2), by one linear scan."""
    stack: list[bool] = []
    deepest = 0
    for index, char in enumerate(text):
        if char == "{":
            stack.append(index > 0 and text[index - 1] == "^")
            deepest = max(deepest, sum(stack))
        elif char == "}" and stack:
            stack.pop()
    return deepest


def too_complex(answer: str) -> bool:
    """Cheap rejection of answers that could make sympy hang or exhaust memory.

    >>> too_complex("\\\\frac{\\\\sqrt{3}}{2}"), too_complex("10^{10^{10}}"), too_complex("9**9**9**9")
    (False, True, True)
    >>> too_complex("x^{x^{x^{x^{2}}}}"), too_complex("\\\\int_0^1 x\\\\,dx"), too_complex("\\udcff")
    (True, True, True)
    """
    if len(answer) > MAX_ANSWER_CHARS or _max_nesting(answer) > MAX_NESTING:
        return True
    if _power_nesting(answer) > MAX_POWER_NESTING or _CALCULUS.search(answer):
        return True
    if any(0xD800 <= ord(char) <= 0xDFFF or (ord(char) < 32 and char not in "\t\n\r") for char in answer):
        return True  # lone surrogates (invalid UTF-8 decoded with surrogateescape) and control characters
    for _base, exponent, top in _NUMERIC_TOWER.findall(answer):
        # base^(exponent^top): the inner power alone must stay a small number of digits
        if int(exponent) > 1 and int(top) * math.log10(int(exponent)) > math.log10(MAX_EXPONENT):
            return True
    if any(int(exponent) > MAX_EXPONENT for exponent in _LITERAL_EXPONENT.findall(answer)):
        return True
    if any(int(operand) > MAX_FACTORIAL for operand in _LITERAL_FACTORIAL.findall(answer)):
        return True
    # (10^{10})! and friends: a factorial of a group that holds a power or another factorial
    for match in _GROUP_FACTORIAL.finditer(answer):
        if re.search(r"\^|\*\*|!", _group_ending_at(answer, match.start())):
            return True
    return False


def _group_ending_at(text: str, close_index: int) -> str:
    """The bracketed group whose closing bracket is text[close_index] (scanning back to its opening)."""
    depth = 0
    for index in range(close_index, -1, -1):
        if text[index] in ")}]":
            depth += 1
        elif text[index] in "({[":
            depth -= 1
            if depth == 0:
                return text[index:close_index + 1]
    return text[:close_index + 1]


# ---------------------------------------------------------------- math grading


def check_math(completion: str, gold: str, timeout_s: float = 5.0,
               pool: SympyWorkerPool | None = None, extraction: str = "boxed") -> bool | None:
    """Is the answer of `completion` (its last box; `extraction`: EXTRACTIONS) equivalent to `gold`? None when
    the gold cannot be parsed.

    >>> check_math("so the answer is \\\\boxed{073}.", "73")
    True
    >>> check_math("\\\\boxed{1,000}", "1000"), check_math("\\\\boxed{\\\\text{Evelyn}}.", "\\\\text{Evelyn}")
    (True, True)
    >>> check_math("no box", "18"), check_math("\\\\boxed{18}", "")
    (False, None)
    >>> check_math("The answer is 18.", "18"), check_math("The answer is 18.", "18", extraction="paper")
    (False, True)
    """
    if len(gold) > MAX_ANSWER_CHARS:  # before any cleanup, whose regexes are not all linear
        return None
    gold_cleaned = clean_answer(gold)
    if not gold_cleaned or too_complex(gold_cleaned):
        return None
    if extraction not in EXTRACTIONS:
        raise ValueError(f"unknown answer extraction {extraction!r}; valid: {sorted(EXTRACTIONS)}")
    boxed = EXTRACTIONS[extraction](completion)
    if boxed is not None and len(boxed) > MAX_ANSWER_CHARS:
        return False
    prediction = clean_answer(boxed) if boxed is not None else ""
    if too_complex(prediction):
        return False
    if prediction and _comparison_key(prediction) == _comparison_key(gold_cleaned):
        return True
    gold_words = _as_words(gold)
    if gold_words is not None:
        return prediction != "" and _as_words("\\text{" + prediction + "}") == gold_words
    gold_number = _as_number(gold_cleaned)
    if gold_number is not None:
        if not prediction:
            return False
        predicted_number = _as_number(prediction)
        if predicted_number is not None:
            if predicted_number[0] == gold_number[0]:
                return True
            if gold_number[1] and predicted_number[1]:  # both exact: no rounding can make them equal
                return False
    return (pool or default_pool()).compare(gold_cleaned, prediction, timeout_s)


def grade_math(completion: str, gold: str, timeout_s: float = 5.0, pool: SympyWorkerPool | None = None) -> bool:
    """True iff the last `\\boxed{}` of `completion` is equivalent to `gold` (see `check_math`).

    >>> grade_math("<think>maybe \\\\boxed{2}</think> so \\\\boxed{\\\\dfrac{14}{3}}", "\\\\frac{14}{3}")
    True
    """
    return check_math(completion, gold, timeout_s, pool) is True


# ---------------------------------------------------------------- multiple choice

_ANSWER_PHRASE = re.compile(r"answer\s*(?:is|:)\s*:?\s*\**\s*\(?([A-Za-z])\)?(?![A-Za-z])", re.IGNORECASE)
_LABEL_THEN_TEXT = re.compile(r"\(?([A-Za-z])[).:]\s+\S.*", re.DOTALL)


def default_labels(num_choices: int) -> tuple[str, ...]:
    return tuple(string.ascii_uppercase[:num_choices])


def _normalize_option(text: str) -> str:
    return " ".join(text.lower().rstrip(".").split())


def _picked_labels(answer: str, choices: Sequence[str], labels: Sequence[str]) -> set[str]:
    """The labels a boxed answer names: a letter, `(B)`, the option text, or `(B) option text`.

    Option text can name several labels: CommonsenseQA has questions with two identical options.
    """
    if len(answer) > MAX_ANSWER_CHARS:
        return set()
    answer = clean_answer(answer)
    token = answer.strip("()").strip().upper()
    if token in labels:
        return {token}
    if len(token) == 1:  # a letter that labels no option
        return set()
    normalized = _normalize_option(answer)
    by_text = {label for label, choice in zip(labels, choices) if normalized == _normalize_option(choice)}
    if by_text:
        return by_text
    labelled = _LABEL_THEN_TEXT.fullmatch(answer)
    if labelled and labelled.group(1).upper() in labels:
        return {labelled.group(1).upper()}
    return set()


def grade_choice(completion: str, gold_label: str, choices: Sequence[str],
                 labels: Sequence[str] | None = None) -> bool:
    """Multiple choice: the last `\\boxed{}` names the gold option (by letter or by its text).

    Without a box, the last "answer is (X)" / "Answer: X" counts instead.

    >>> grade_choice("... \\\\boxed{(B)}", "B", ["bank", "library"])
    True
    >>> grade_choice("\\\\boxed{bank}", "B", ["bank", "library"])
    False
    >>> grade_choice("So the answer is (b).", "(B)", ["bank", "library"])
    True
    """
    labels = tuple(label.upper() for label in labels) if labels is not None else default_labels(len(choices))
    gold = clean_answer(gold_label).strip("()").upper()
    boxed = extract_last_boxed(completion)
    if boxed is not None:
        return gold in _picked_labels(boxed, choices, labels)
    text = completion.rsplit("</think>", 1)[-1]
    phrases = _ANSWER_PHRASE.findall(text) or _ANSWER_PHRASE.findall(completion)
    return bool(phrases) and phrases[-1].upper() == gold and gold in labels
