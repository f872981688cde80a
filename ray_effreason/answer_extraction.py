"""Answer extraction: where a completion's final answer is read from (pure string scanning, linear time).

The answer is the content of the LAST `\\boxed{...}` (PAPER.md §1.2: Qwen2.5-Math `extract_answer`
takes the last box, in training and in evaluation). A completion with no box has no answer; the prompt's
own `\\boxed{}` is not part of the completion, so it cannot count. The paper's evaluation adds fallbacks
(`extract_paper_answer`); `EXTRACTIONS` names both for --answer-extraction. Equivalence is verifiers.py's.
"""

from __future__ import annotations

import re

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")  # not `\boxedfoo`, another command


def brace_content(text: str, open_index: int) -> str | None:
    """Content of the group opening at text[open_index] == '{', by one linear scan; None if unclosed.

    A backslash escapes the next character, so `\\{` and `\\}` inside the group are content.
    """
    depth = 0
    index = open_index
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1:index]
        index += 1
    return None


def _last_boxed(text: str) -> str | None:
    last = None
    for last in _BOX_COMMAND.finditer(text):  # noqa: B007  (one linear pass: keep the last match)
        pass
    if last is None:
        return None
    rest = text[last.end():]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        return brace_content(text, last.end() + len(rest) - len(stripped))
    if stripped and len(stripped) < len(rest):  # `\boxed 5`: one token, up to a space or `$`
        return re.match(r"[^\s$]*", stripped).group(0)
    return None


def extract_last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` / `\\boxed 5`, or None.

    After a `</think>`, the answer part is searched first (a box inside the thinking is a draft),
    falling back to the whole text.

    >>> extract_last_boxed("so \\\\boxed{1} or rather \\\\boxed{\\\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    >>> extract_last_boxed("<think>\\\\boxed{3}</think> The answer is \\\\boxed 4.")
    '4.'
    >>> extract_last_boxed("no box") is None
    True
    """
    if "</think>" in text:
        found = _last_boxed(text.rsplit("</think>", 1)[1])
        if found is not None:
            return found
    return _last_boxed(text)


# "the answer is X" and the last number: the paper evaluation's fallbacks (Qwen2.5-Math `extract_answer`).
_ANSWER_IS = "he answer is"
_LAST_NUMBER = re.compile(r"-?\d*\.?\d+")


def extract_paper_answer(text: str) -> str | None:
    """The paper's evaluation extraction (PAPER.md §4): the last `\\boxed{}`, else what follows the last
    "the answer is", else the last number. Training has no fallback (the paper's neither).

    >>> extract_paper_answer("The answer is 18."), extract_paper_answer("so 3 + 4 = 7 apples")
    ('18', '7')
    >>> extract_paper_answer("no answer here") is None
    True
    """
    boxed = extract_last_boxed(text)
    if boxed is not None:
        return boxed
    if _ANSWER_IS in text:
        answer = re.sub(r"\n\s*", "", text.rsplit(_ANSWER_IS, 1)[1]).strip()
        answer = answer[1:].strip() if answer.startswith(":") else answer
        answer = answer.rstrip("./").strip()
        return answer or None
    numbers = _LAST_NUMBER.findall(text.replace(",", ""))
    return numbers[-1] if numbers else None


# --answer-extraction: where a completion's answer is read from.
EXTRACTIONS = {"boxed": extract_last_boxed, "paper": extract_paper_answer}
