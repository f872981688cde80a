"""Budgets stated in prompts (budget_prompts.py) and EvalConfig.prompt_budget, on the real benchmark files."""

import pytest

from ray_effreason.budget_prompts import WORDINGS, state_budget
from ray_effreason.config import EvalConfig
from ray_effreason.eval_inputs import check_settings, load_tasks


@pytest.mark.parametrize("wording", list(WORDINGS))
def test_every_wording_keeps_the_message_and_states_the_number(wording):
    message = "Janet has 3 apples. How many? Put your final answer within \\boxed{}."
    stated = state_budget(message, 640, wording)
    assert message in stated and "640" in stated and stated != message


def test_unknown_wording_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match="tale, l1"):
        state_budget("x", 10, "tael")
    with pytest.raises(ValueError, match="budget_wording"):
        EvalConfig(tasks=("gsm8k",), budget_wording="tael")
    with pytest.raises(ValueError, match="prompt_budget"):
        EvalConfig(tasks=("gsm8k",), prompt_budget=0)


@pytest.mark.parametrize("task", ["gsm8k", "math500", "synthetic"])
def test_prompt_budget_states_it_on_every_task_and_keeps_the_problems(task, data_dir):
    plain = load_tasks(EvalConfig(tasks=(task,), data_dir=str(data_dir)))[task].examples
    stated = load_tasks(EvalConfig(tasks=(task,), data_dir=str(data_dir), prompt_budget=96))[task].examples
    assert len(stated) == len(plain) > 0
    for before, after in zip(plain, stated):
        assert (after.id, after.gold, after.level) == (before.id, before.gold, before.level)  # same seeds, same grading
        assert after.prompt == state_budget(before.prompt, 96, "tale")
    l1 = load_tasks(EvalConfig(tasks=(task,), data_dir=str(data_dir), prompt_budget=96, budget_wording="l1"))
    assert l1[task].examples[0].prompt.endswith("Think for maximum 96 tokens.")


def test_a_dir_evaluated_with_one_budget_refuses_another(tmp_path):
    check_settings(EvalConfig(tasks=("gsm8k",), prompt_budget=64), tmp_path)
    check_settings(EvalConfig(tasks=("gsm8k",), prompt_budget=64), tmp_path)  # the same settings resume
    with pytest.raises(ValueError, match="--prompt-budget 64 .now 128."):
        check_settings(EvalConfig(tasks=("gsm8k",), prompt_budget=128), tmp_path)


def test_a_dir_written_before_budgets_existed_still_resumes(tmp_path):
    import json

    check_settings(EvalConfig(tasks=("gsm8k",)), tmp_path)
    path = tmp_path / "generation.json"
    old = {name: value for name, value in json.loads(path.read_text()).items()
           if name not in ("prompt_budget", "budget_wording")}
    path.write_text(json.dumps(old))
    check_settings(EvalConfig(tasks=("gsm8k",)), tmp_path)  # no error: the missing settings had their defaults
