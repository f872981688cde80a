"""Tasks on the real benchmark files: every reference answer grades correct, a wrong one never does."""

import json
import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from ray_effreason.answer_extraction import extract_last_boxed
from ray_effreason.sympy_pool import SympyWorkerPool
from ray_effreason.tasks import CHOICE_INSTRUCTION, MATH_INSTRUCTION, load_task
from ray_effreason.tasks.base import DataError
from ray_effreason.verifiers import check_math


def boxed(answer) -> str:
    return f"Let me think.\nSo the final answer is $\\boxed{{{answer}}}$."


def read_rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def grade_all(task, completions):
    return [task.grade(completion, example) for completion, example in zip(completions, task.examples)]


# ---------------------------------------------------------------- whole datasets


def test_gsm8k_every_gold_grades_correct_and_gold_plus_one_wrong(data_dir):
    task = load_task("gsm8k", data_dir / "gsm8k")
    assert len(task) == 1319
    assert grade_all(task, [boxed(example.gold) for example in task.examples]) == [True] * 1319
    assert grade_all(task, [boxed(int(example.gold) + 1) for example in task.examples]) == [False] * 1319


def test_math500_every_reference_solution_grades_correct(data_dir):
    task = load_task("math500", data_dir / "math500" / "test.jsonl")
    assert len(task) == 500
    # the reference solution text itself: its last box is the answer
    assert grade_all(task, [example.reference for example in task.examples]) == [True] * 500


def math500_wrong_answer(answers, index):
    """gold + 1 for integers; otherwise the next non-integer answer written differently."""
    gold = answers[index]
    if gold.lstrip("-").isdigit():
        return str(int(gold) + 1)
    for offset in range(1, len(answers)):
        other = answers[(index + offset) % len(answers)]
        if not other.lstrip("-").isdigit() and other.replace(" ", "") != gold.replace(" ", ""):
            return other
    raise AssertionError("no other answer")


@pytest.mark.slow  # ~17 s: 500 sympy comparisons
def test_math500_a_clearly_different_answer_grades_wrong_on_every_row(data_dir):
    task = load_task("math500", data_dir / "math500")
    answers = [example.gold for example in task.examples]
    completions = [boxed(math500_wrong_answer(answers, index)) for index in range(len(answers))]
    # Full dataset, two sympy worker processes (about half the rows need sympy).
    pool = SympyWorkerPool(num_workers=2)
    try:
        with ThreadPoolExecutor(2) as threads:
            verdicts = list(threads.map(lambda pair: check_math(pair[0], pair[1].gold, pool=pool),
                                        zip(completions, task.examples)))
    finally:
        pool.close()
    assert verdicts == [False] * 500
    assert pool.timeouts == 0


def test_aime2024_gold_and_original_forms_grade_correct(data_dir):
    task = load_task("aime2024", data_dir / "aime2024")
    rows = read_rows(data_dir / "aime2024" / "test.jsonl")
    assert len(task) == 30 and [example.id for example in task.examples] == [row["id"] for row in rows]
    assert any(row["answer_original"].startswith("0") for row in rows)  # the leading-zero case is exercised
    assert grade_all(task, [boxed(row["answer_original"]) for row in rows]) == [True] * 30
    assert grade_all(task, [boxed(row["answer"]) for row in rows]) == [True] * 30
    assert grade_all(task, [boxed(row["answer"] + 1) for row in rows]) == [False] * 30
    # a gold written as "025" still grades "25" correct
    assert all(check_math(boxed(row["answer"]), row["answer_original"]) for row in rows)


def test_amc23_every_gold_grades_correct_and_gold_plus_one_wrong(data_dir):
    task = load_task("amc23", data_dir / "amc23" / "test.jsonl")
    assert len(task) == 40
    assert grade_all(task, [boxed(example.gold) for example in task.examples]) == [True] * 40
    assert grade_all(task, [boxed(int(example.gold) + 1) for example in task.examples]) == [False] * 40


def choice_completions(task, correct, by_text):
    """The gold option (correct=True) or the next option after it, named by its letter or its text."""
    completions = []
    for example in task.examples:
        labels = "ABCDEFG"[:len(example.choices)]
        gold = labels.index(example.gold)
        index = gold
        if not correct:  # the next option; by text, the next one whose text differs (CSQA repeats some)
            index = next(index % len(labels) for index in range(gold + 1, gold + len(labels))
                         if not by_text or example.choices[index % len(labels)] != example.choices[gold])
        completions.append(boxed(example.choices[index] if by_text else labels[index]))
    return completions


@pytest.mark.parametrize(("name", "relative", "count"), [
    ("commonsenseqa", "commonsenseqa", 1221),
    ("logical_deduction", "bbh_logical_deduction", 750),
])
def test_multiple_choice_gold_grades_correct_and_other_options_wrong(data_dir, name, relative, count):
    task = load_task(name, data_dir / relative)
    assert len(task) == count
    for by_text in (False, True):
        assert grade_all(task, choice_completions(task, True, by_text)) == [True] * count
        assert grade_all(task, choice_completions(task, False, by_text)) == [False] * count


# ---------------------------------------------------------------- example fields


def test_math_examples_carry_instruction_level_subject_and_reference(data_dir):
    task = load_task("math500", data_dir / "math500")
    assert len({example.id for example in task.examples}) == 500
    assert all(example.prompt.startswith(MATH_INSTRUCTION + " Question: ") for example in task.examples)
    assert {example.level for example in task.examples} == {1, 2, 3, 4, 5}
    assert len({example.subject for example in task.examples}) == 7
    assert all(extract_last_boxed(example.reference) for example in task.examples)
    gsm8k = load_task("gsm8k", data_dir / "gsm8k" / "test.jsonl")
    assert gsm8k.examples[0].id == "gsm8k-0" and gsm8k.examples[0].level is None
    assert gsm8k.examples[0].reference.endswith("#### 18")


def test_logical_deduction_level_is_the_number_of_objects(data_dir):
    task = load_task("logical_deduction", data_dir / "bbh_logical_deduction")
    levels = [example.level for example in task.examples]
    assert [levels.count(objects) for objects in (3, 5, 7)] == [250, 250, 250]
    assert all(len(example.choices) == example.level for example in task.examples)
    assert all(example.prompt.endswith(CHOICE_INSTRUCTION) and "Options:\n(A) " in example.prompt
               for example in task.examples)
    one_file = load_task("logical_deduction",
                         data_dir / "bbh_logical_deduction" / "logical_deduction_seven_objects.jsonl")
    assert len(one_file) == 250 and {example.level for example in one_file.examples} == {7}


def test_commonsenseqa_prompt_lists_the_options(data_dir):
    example = load_task("commonsenseqa", data_dir / "commonsenseqa").examples[0]
    assert "(A) bank\n(B) library\n" in example.prompt and example.prompt.endswith(CHOICE_INSTRUCTION)
    assert example.id == "1afa02df02c908a558b4036e80242fac" and example.gold == "A"


def test_task_survives_pickling_and_grades_the_same(data_dir):
    task = load_task("amc23", data_dir / "amc23")
    copy = pickle.loads(pickle.dumps(task))
    assert copy.examples == task.examples
    assert copy.grade(boxed(task.examples[3].gold), copy.examples[3]) is True


def test_unparseable_gold_grades_none(data_dir):
    task = load_task("math500", data_dir / "math500")
    broken = task.examples[0].__class__(**{**task.examples[0].__dict__, "gold": ""})
    assert task.grade(boxed("1"), broken) is None
    choice = load_task("commonsenseqa", data_dir / "commonsenseqa")
    broken_choice = choice.examples[0].__class__(**{**choice.examples[0].__dict__, "gold": "Q"})
    assert choice.grade(boxed("A"), broken_choice) is None


# ---------------------------------------------------------------- loading


def test_load_task_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: aime2024, amc23, commonsenseqa, gsm8k"):
        load_task("mmlu")


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD_GSM8K = json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2", "final": "2"})


@pytest.mark.parametrize("bad_line", [
    "{not json",
    json.dumps({"question": "no answer field"}),
    json.dumps({"question": "2+2?", "answer": "4", "final": "four"}),  # not an integer: caught by the converter
])
def test_malformed_row_error_names_file_and_line(tmp_path, bad_line):
    path = write_lines(tmp_path / "test.jsonl", [GOOD_GSM8K, bad_line, GOOD_GSM8K])
    with pytest.raises(DataError, match=f"{path}:2"):
        load_task("gsm8k", path)


def test_skip_bad_rows_counts_them(tmp_path):
    path = write_lines(tmp_path / "test.jsonl", [GOOD_GSM8K, "{oops", GOOD_GSM8K, "[1, 2]",
                                                 json.dumps({"question": "q", "answer": "no hashes"})])
    task = load_task("gsm8k", tmp_path, skip_bad_rows=True)
    assert len(task) == 2 and task.bad_rows.count == 3
    assert [example.id for example in task.examples] == ["gsm8k-0", "gsm8k-2"]  # ids follow lines
    assert all(str(path) in message for message in task.bad_rows.messages)


def test_multiple_choice_row_with_unknown_answer_key_is_a_bad_row(tmp_path):
    row = {"id": "q1", "question": "?", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "C"}
    path = write_lines(tmp_path / "validation.jsonl", [json.dumps(row)])
    with pytest.raises(DataError, match=f"{path}:1: .*answerKey"):
        load_task("commonsenseqa", tmp_path)


def test_numina_gold_is_last_box_and_rows_without_one_are_dropped(tmp_path):
    rows = [
        {"problem": "Find x.", "solution": "First \\boxed{1}, then $x = \\boxed{\\frac{1}{2}}$."},
        {"problem": "Prove it.", "solution": "A proof without a box."},
        {"problem": "Empty.", "solution": "\\boxed{}"},
        {"problem": "Set.", "solution": "So $\\boxed{\\{1, 2\\}}$"},
    ]
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(row) for row in rows])
    task = load_task("numina_math", path)
    assert [example.gold for example in task.examples] == ["\\frac{1}{2}", "\\{1, 2\\}"]
    assert task.rows_without_answer == 2 and task.bad_rows.count == 0
    assert task.examples[0].prompt == MATH_INSTRUCTION + " Question: Find x."  # the paper's wording (§8)
    assert task.grade("\\boxed{0.5}", task.examples[0]) and not task.grade("\\boxed{1}", task.examples[0])
    assert task.grade("\\boxed{\\{2,1\\}}", task.examples[1])


def test_hugging_face_branch_fails_clearly_when_offline(tmp_path):
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    code = "from ray_effreason.tasks import load_task; load_task('gsm8k')"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode != 0
    assert "could not load Hugging Face dataset 'openai/gsm8k'" in result.stderr
    assert "Pass path= to a local JSONL file" in result.stderr


def test_row_converters_accept_the_hugging_face_layouts():
    # Rows shaped like the hub datasets (the same converter reads the local files above).
    from ray_effreason.tasks import aime, amc, gsm8k, logical_deduction

    hub_gsm8k = gsm8k.example_from_row({"question": "Q?", "answer": "2 * 617 = 1234\n#### 1,234"}, 5)
    assert (hub_gsm8k.id, hub_gsm8k.gold) == ("gsm8k-5", "1234")
    hub_aime = aime.example_from_row({"id": 60, "problem": "P", "solution": "S", "answer": "073", "url": "u"}, 0)
    assert (hub_aime.id, hub_aime.gold, hub_aime.reference) == ("60", "73", "S")
    hub_amc = amc.example_from_row({"id": 0, "question": "P", "answer": 27.0, "url": "u"}, 0)
    assert (hub_amc.gold, hub_amc.prompt) == ("27", MATH_INSTRUCTION + " Question: P")
    bbh_input = "Order them.\nOptions:\n(A) The owl is first\n(B) The hawk is first\n(C) The jay is first"
    hub_bbh = logical_deduction.example_from_row({"input": bbh_input, "target": "(B)"}, 4)
    assert (hub_bbh.gold, hub_bbh.level, hub_bbh.choices[1]) == ("B", 3, "The hawk is first")
    with pytest.raises(ValueError, match="not an integer"):
        amc.example_from_row({"id": 1, "question": "P", "answer": 2.5}, 1)


# ---------------------------------------------------------------- the registry


def test_every_registered_task_carries_its_facts_and_its_data_folder_exists(data_dir):
    from ray_effreason.tasks import TASKS

    for name, cls in TASKS.items():
        assert cls.name == name
        assert cls.eval_samples >= 1 and isinstance(cls.eval_split, str)
        if cls.data_subdir is not None:  # the local copy beside the repo, as --data-dir expects it
            assert (data_dir / cls.data_subdir).is_dir(), name
        if cls.eval_tasks is not None:
            assert set(cls.eval_tasks) <= set(TASKS)
    assert (TASKS["gsm8k"].eval_samples, TASKS["math500"].eval_samples, TASKS["aime2024"].eval_samples) == (1, 3, 10)


def test_plain_load_reads_the_eval_split(data_dir):
    assert load_task("commonsenseqa", data_dir / "commonsenseqa").split == "validation"
    assert load_task("gsm8k", data_dir / "gsm8k").split == "test"


# ---------------------------------------------------------------- prompt templates (PAPER.md §8)

R1_CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
                    "{{ '<｜User｜>' + message['content'] }}{% endif %}{% endfor %}"
                    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}")


@pytest.fixture(scope="module")
def r1_tokenizer():
    """A tokenizer built locally with R1-Distill's special tokens and a chat template that, like the
    revisions from 2025-02-09 on, appends `<think>\\n` to the generation prompt."""
    from ray_effreason.tiny_reasoner import build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "<｜begin▁of▁sentence｜>",
                                  "additional_special_tokens": ["<｜User｜>", "<｜Assistant｜>"]})
    tokenizer.chat_template = R1_CHAT_TEMPLATE
    return tokenizer


def test_paper_template_is_the_literal_training_string_without_think(r1_tokenizer):
    from ray_effreason.tasks.base import math_prompt, prompt_token_ids, render_prompt

    message = math_prompt("What is 2+2?")
    expected = ("<｜begin▁of▁sentence｜><｜User｜>Please reason step by step, and put your final answer within "
                "\\boxed{}. Question: What is 2+2?<｜Assistant｜>")
    assert render_prompt(message, r1_tokenizer, "paper") == expected
    assert render_prompt(message, r1_tokenizer, "chat") == expected + "<think>\n"  # evaluation: the chat template
    ids = prompt_token_ids(message, r1_tokenizer, "paper")
    assert ids[0] == r1_tokenizer.bos_token_id and ids.count(r1_tokenizer.bos_token_id) == 1  # BOS given literally
    assert r1_tokenizer.decode(ids) == expected


def test_paper_extraction_grades_the_answer_is_in_evaluation_and_not_in_training(data_dir):
    # PAPER.md §4: the evaluation falls back to "the answer is ..." and then the last number; training does not
    from ray_effreason.config import EvalConfig, TrainConfig
    from ray_effreason.config_tree import from_flat
    from ray_effreason.presets import EVAL_PRESETS, TRAIN_PRESETS

    evaluation = from_flat(EvalConfig, EVAL_PRESETS["paper"]).reward.answer_extraction
    training = from_flat(TrainConfig, TRAIN_PRESETS["paper-1.5b"]).reward.answer_extraction
    assert (evaluation, training) == ("paper", "boxed")
    task = load_task("gsm8k", data_dir / "gsm8k")
    for example in task.examples:
        completion = f"<think>\nadding up\n</think>\nThe answer is {example.gold}."
        assert task.grade(completion, example, extraction=evaluation), example.id
        assert not task.grade(completion, example, extraction=training), example.id
        assert task.grade(f"so {example.gold}", example, extraction=evaluation)  # the last number
    gsm8k_18 = next(example for example in task.examples if example.gold == "18")
    assert task.grade("The answer is 18.", gsm8k_18, extraction="paper")
    assert not task.grade("The answer is 18.", gsm8k_18)
