"""Forced answers: the "generation cutoff" baseline (PAPER.md §5; its construction is unpublished, this one is ours).

A sample that hits `max_new_tokens` is continued from its prompt + completion +
`\\n</think>\\n\\nFinal answer: \\boxed{` (without the close tag when no thinking is open) for at most
`forced_answer_tokens` more tokens, and the combined text is graded. Its `num_tokens` counts both parts
and the forced suffix; `finish_reason` stays "length" (the record schema has no forced flag: in a
forced-answer run every "length" record is a forced answer).
"""

from __future__ import annotations

from typing import Any

from ray_effreason.config import SamplingConfig


def thinking_open(text: str) -> bool:
    """True when the text opened `<think>` and has not closed it since.

    >>> thinking_open("<think>\\nso 3"), thinking_open("<think>3</think> \\\\boxed{"), thinking_open("3 + 4")
    (True, False, False)
    """
    start = text.rfind("<think>")
    return start >= 0 and "</think>" not in text[start:]


def answer_suffix(close_thinking: bool) -> str:
    """What a forced answer appends to a truncated completion before the model writes the answer."""
    return ("\n</think>" if close_thinking else "") + "\n\nFinal answer: \\boxed{"


def force_answers(generators: Any, completions: list[Any], tokenizer: Any, sampling: SamplingConfig,
                  seeds: dict[int, int]) -> list[tuple[str, int]]:
    """(text, num_tokens) per completion; truncated ones get a forced final answer of `sampling.max_new_tokens`."""
    from ray_effreason.actors.generator import SampleRequest

    results = [(c.text, c.num_tokens) for c in completions]
    truncated = [index for index, c in enumerate(completions) if c.finish_reason == "length"]
    if not truncated:
        return results
    suffixes, requests = {}, []
    for index in truncated:
        c = completions[index]
        context = tokenizer.decode(c.prompt_token_ids + c.token_ids, skip_special_tokens=False)
        suffix = answer_suffix(thinking_open(context))
        suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
        suffixes[index] = (suffix, len(suffix_ids))
        requests.append(SampleRequest(index, c.prompt_index, c.sample_index, "", seeds[c.request_id],
                                      prompt_token_ids=tuple(c.prompt_token_ids + c.token_ids + suffix_ids)))
    for answer in generators.generate(requests, sampling):
        c, (suffix, suffix_tokens) = completions[answer.request_id], suffixes[answer.request_id]
        results[answer.request_id] = (c.text + suffix + answer.text, c.num_tokens + suffix_tokens + answer.num_tokens)
    return results
