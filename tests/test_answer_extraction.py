"""Answer extraction: the last box, nested braces, `</think>`, and linear time on adversarial text."""

import time

from ray_effreason.answer_extraction import extract_last_boxed


def test_extract_last_boxed_handles_nested_braces():
    assert extract_last_boxed("\\boxed{\\frac{\\sqrt{a^{2}}}{2}}") == "\\frac{\\sqrt{a^{2}}}{2}"


def test_extract_last_boxed_takes_the_last_of_several_boxes():
    assert extract_last_boxed("\\boxed{1} then \\boxed{2} finally \\boxed{\\{3, 4\\}}") == "\\{3, 4\\}"


def test_extract_last_boxed_accepts_fbox_and_the_spaced_form():
    assert extract_last_boxed("\\boxed{1} and \\fbox{7}") == "7"
    assert extract_last_boxed("so \\boxed 42$.") == "42"


def test_extract_last_boxed_unclosed_or_missing_box_is_none():
    assert extract_last_boxed("\\boxed{12") is None
    assert extract_last_boxed("the answer is 12") is None
    assert extract_last_boxed("\\boxedsomething{3}") is None


def test_extract_last_boxed_prefers_text_after_think_and_falls_back_to_whole_text():
    assert extract_last_boxed("<think>\\boxed{1}</think>so \\boxed{2}") == "2"
    assert extract_last_boxed("<think>try \\boxed{1} or \\boxed{5}</think> it is five") == "5"
    assert extract_last_boxed("<think>\\boxed{9}</think> answer \\boxed{3} </think> done") == "3"


def test_extract_last_boxed_is_fast_on_long_adversarial_text():
    texts = ["\\boxedx" * 50_000 + "\\boxed{7}", "\\boxed{" + "{" * 200_000, "</think>" * 50_000 + "\\fbox{7}"]
    start = time.monotonic()
    assert [extract_last_boxed(text) for text in texts] == ["7", None, "7"]
    assert time.monotonic() - start < 2.0
