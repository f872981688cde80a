"""The evaluation runner end to end: real Ray actors, a real tiny Qwen2 (random weights), real benchmark files.

One Ray instance for the module; three evaluations start actors (a base run, a resume, a forced-answer
run), everything else reuses their output directories.
"""

import importlib.util
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from conftest import records_by_model, same_records
from transformers import AutoTokenizer

from ray_effreason.budget_prompts import with_budget
from ray_effreason.config import EvalConfig
from ray_effreason.config_tree import from_flat
from ray_effreason.eval_actors import EvalActorCache, actor_settings, generation_budget, reusable_for
from ray_effreason.eval_inputs import load_tasks
from ray_effreason.eval_runner import RECORDS, evaluate
from ray_effreason.evaluation import read_records, read_summary
from ray_effreason.forced_answer import answer_suffix
from ray_effreason.tasks import TaskSet
from ray_effreason.tiny_reasoner import build_model, build_tokenizer

pytestmark = pytest.mark.ray  # starts a Ray cluster

REPO_ROOT = Path(__file__).resolve().parents[1]
PNG_HEADER = b"\x89PNG\r\n\x1a\n"
TASKS = ("gsm8k", "math500", "aime2024", "commonsenseqa")
MAX_NEW_TOKENS = 12
FORCED_ANSWER_TOKENS = 4


@pytest.fixture(scope="module")
def ray_cluster(ray_local):  # the session's instance (conftest.py)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A randomly initialized tiny Qwen2 (with its tokenizer) in `<dir>/tiny`."""
    root = tmp_path_factory.mktemp("models")
    tokenizer = build_tokenizer()
    build_model(tokenizer, seed=0).save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    return root


def config(data_dir, model_dir, output_dir, **overrides) -> EvalConfig:
    values = dict(models=(str(model_dir / "tiny"),), tasks=TASKS, data_dir=str(data_dir), output_dir=str(output_dir),
                  samples=2, limit=2, max_new_tokens=MAX_NEW_TOKENS, num_verifiers=2, device="cpu",
                  generator_backend="transformers",  # the runner, not the backend, is under test (vLLM: test_vllm.py)
                  batch_size=1)
    return from_flat(EvalConfig, {**values, **overrides})


@pytest.fixture(scope="module")
def base_run(ray_cluster, data_dir, model_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("base")
    return output_dir, evaluate(config(data_dir, model_dir, output_dir))


def part_files(output_dir: Path) -> list[Path]:
    return sorted((output_dir / RECORDS).glob("part-*.parquet"))


# ---------------------------------------------------------------- a full run


def test_evaluate_benchmarks_records_one_per_problem_and_sample(base_run, data_dir):
    output_dir, summary = base_run
    rows = read_records(output_dir / RECORDS).to_pylist()
    assert len(rows) == len(TASKS) * 2 * 2  # tasks x limit x samples
    assert len(part_files(output_dir)) == len(TASKS) * 2  # appended after every batch of one problem
    tasks = load_tasks(config(data_dir, Path("."), output_dir))
    for name in TASKS:
        examples = {example.id: example for example in tasks[name].examples[:2]}
        task_rows = [row for row in rows if row["task"] == name]
        assert {(row["problem_id"], row["sample_index"]) for row in task_rows} == {
            (problem_id, index) for problem_id in examples for index in (0, 1)}
        for row in task_rows:
            assert row["model"] == "tiny"
            assert 1 <= row["num_tokens"] <= MAX_NEW_TOKENS
            assert (row["finish_reason"] == "length") == (row["num_tokens"] == MAX_NEW_TOKENS)
            assert row["level"] == examples[row["problem_id"]].level
            assert row["min_tokens"] is None
            if row["extracted_answer"] is None:
                assert row["correct"] is False
    assert any(row["level"] is not None for row in rows if row["task"] == "math500")
    for name in TASKS:
        assert summary["models"]["tiny"][name]["n_samples"] == 4
    assert summary["metadata"]["generated"] == {"tiny": {name: 4 for name in TASKS}}


def test_evaluate_writes_summary_markdown_and_plots(base_run):
    output_dir, summary = base_run
    assert read_summary(output_dir)["models"] == summary["models"]
    markdown = (output_dir / "summary.md").read_text()
    assert all(f"| tiny (base) | {name} |" in markdown for name in TASKS)
    for plot in ("pareto.png", "tokens_by_level.png"):  # math500 has levels
        assert (output_dir / plot).read_bytes()[:8] == PNG_HEADER


# ---------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def resumed_run(base_run, data_dir, model_dir, tmp_path_factory):
    """The base run's directory copied, then evaluated again with one more problem per task."""
    output_dir = tmp_path_factory.mktemp("resumed") / "eval"
    shutil.copytree(base_run[0], output_dir)
    before = part_files(output_dir)
    return output_dir, before, evaluate(config(data_dir, model_dir, output_dir, limit=3))


def test_resume_generates_only_the_new_problem(resumed_run, base_run, data_dir):
    output_dir, before, summary = resumed_run
    assert summary["metadata"]["generated"] == {"tiny": {name: 2 for name in TASKS}}
    new_rows = [row for path in part_files(output_dir) if path not in before for row in pq.read_table(path).to_pylist()]
    third = {name: task.examples[2].id for name, task in load_tasks(config(data_dir, Path("."), output_dir)).items()}
    assert sorted((row["task"], row["problem_id"], row["sample_index"]) for row in new_rows) == sorted(
        (name, third[name], index) for name in TASKS for index in (0, 1))
    # No duplicates on disk (not only after read_records drops them), and old records untouched.
    raw = sum(pq.read_table(path).num_rows for path in part_files(output_dir))
    assert raw == len(read_records(output_dir / RECORDS)) == len(TASKS) * 3 * 2
    assert read_records(before).to_pylist() == read_records(base_run[0] / RECORDS).to_pylist()


def test_rerun_with_the_same_config_writes_nothing(resumed_run, data_dir, model_dir):
    output_dir, _, _ = resumed_run
    parts = part_files(output_dir)
    summary = evaluate(config(data_dir, model_dir, output_dir, limit=3))
    assert summary["metadata"]["generated"] == {"tiny": {name: 0 for name in TASKS}}
    assert part_files(output_dir) == parts


def test_rerun_with_another_budget_in_the_same_dir_is_refused(resumed_run, data_dir, model_dir):
    output_dir, _, _ = resumed_run
    with pytest.raises(ValueError, match=r"--max-new-tokens 12 \(now 13\)"):
        evaluate(config(data_dir, model_dir, output_dir, max_new_tokens=13))


# ---------------------------------------------------------------- forced answer


@pytest.fixture(scope="module")
def forced_run(base_run, data_dir, model_dir, tmp_path_factory):
    """The base run's model and seeds under another name, gsm8k and math500, answers forced."""
    output_dir = tmp_path_factory.mktemp("forced")
    evaluate(config(data_dir, model_dir, output_dir, names=("tiny-forced",),
                    tasks=("gsm8k", "math500"), force_answer=True, forced_answer_tokens=FORCED_ANSWER_TOKENS))
    return output_dir


def test_force_answer_counts_the_continuation_of_truncated_samples(forced_run, base_run, model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir / "tiny")  # as the runner and the workers load it
    suffix_tokens = [len(tokenizer(answer_suffix(close), add_special_tokens=False)["input_ids"])
                     for close in (False, True)]
    key = ("task", "problem_id", "sample_index")
    plain = {tuple(row[name] for name in key): row for row in read_records(base_run[0] / RECORDS).to_pylist()}
    forced = read_records(forced_run / RECORDS).to_pylist()
    assert len(forced) == 2 * 2 * 2 and {row["model"] for row in forced} == {"tiny-forced"}
    truncated = 0
    for row in forced:
        before = plain[tuple(row[name] for name in key)]
        assert row["finish_reason"] == before["finish_reason"]  # same seeds: the same first part
        if row["finish_reason"] == "stop":
            assert row["num_tokens"] == before["num_tokens"]
        else:
            truncated += 1
            extra = row["num_tokens"] - MAX_NEW_TOKENS
            assert min(suffix_tokens) + 1 <= extra <= max(suffix_tokens) + FORCED_ANSWER_TOKENS
    assert truncated > 0  # a random model rarely emits EOS within 12 tokens


# ---------------------------------------------------------------- report only and the CLI


def load_job():
    spec = importlib.util.spec_from_file_location("evaluate_job", REPO_ROOT / "jobs" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_flag_merges_dirs_without_generating(base_run, forced_run, tmp_path):
    load_job().main(["--report", str(base_run[0]), str(forced_run), "--output-dir", str(tmp_path)])
    summary = read_summary(tmp_path)
    assert summary["base_model"] == "tiny"  # taken from the first dir's summary.json
    assert set(summary["models"]) == {"tiny", "tiny-forced"}
    assert summary["models"]["tiny"] == base_run[1]["models"]["tiny"]
    assert summary["relative"]["tiny-forced"]["tasks"] == ["gsm8k", "math500"]
    assert (tmp_path / "pareto.png").read_bytes()[:8] == PNG_HEADER
    assert not (tmp_path / RECORDS).exists()


@pytest.mark.parametrize("flags, message", [
    (["--tasks", "gsm8k,mmlu"], "--tasks: tasks='mmlu' is not valid"),
    (["--tasks", "gsm8k", "--data-dir", "/nonexistent"], "--data-dir: no gsm8k/"),
    (["--tasks", "gsm8k,math500", "--task-path", "x.jsonl"], "--task-path: task_path needs exactly one task"),
    (["--samples", "gsm8k=two"], "--samples: samples: expected an int"),
])
def test_cli_bad_input_names_the_flag(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_job().main(["--models", "org/model", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_report_flag_missing_dir_names_it(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load_job().main(["--report", str(tmp_path / "missing"), "--output-dir", str(tmp_path)])
    assert f"--report: {tmp_path / 'missing'} does not exist" in capsys.readouterr().err


def test_task_set_grades_each_example_with_its_own_task(data_dir):
    tasks = load_tasks(config(data_dir, Path("."), "unused", tasks=("gsm8k", "commonsenseqa", "logical_deduction")))
    graders = TaskSet(tasks)
    for task in tasks.values():
        for example in task.examples[:20]:
            assert graders.grade(f"so \\boxed{{{example.gold}}}", example) is True
            wrong = "Z" if example.choices else str(int(example.gold) + 1)
            assert graders.grade(f"so \\boxed{{{wrong}}}", example) is False
    # a stated budget rewrites the prompts after loading (the comparison's prompted rows): graded as before
    for example in with_budget(tasks["gsm8k"].examples[:5], 8, "tale"):
        assert graders.grade(f"so \\boxed{{{example.gold}}}", example) is True
    with pytest.raises(KeyError):  # an example of no task in the set
        graders.grade("so \\boxed{1}", replace(tasks["gsm8k"].examples[0], id="elsewhere"))


# ---------------------------------------------------------------- one set of actors for a family


def test_checkpoints_of_one_architecture_and_tokenizer_share_the_actors(tiny_model, retrained_model, tmp_path):
    assert reusable_for(tiny_model, retrained_model, tokenizer=None)
    other = tmp_path / "wider"
    config_json = json.loads((Path(retrained_model) / "config.json").read_text())
    shutil.copytree(retrained_model, other)
    (other / "config.json").write_text(json.dumps({**config_json, "_name_or_path": "elsewhere"}))
    assert reusable_for(tiny_model, str(other), tokenizer=None)  # a name is not an architecture
    (other / "config.json").write_text(json.dumps({**config_json, "intermediate_size": 192}))
    assert not reusable_for(tiny_model, str(other), tokenizer=None)
    (other / "config.json").write_text(json.dumps(config_json))
    (other / "chat_template.jinja").write_text("{{ messages }}")
    assert not reusable_for(tiny_model, str(other), tokenizer=None)  # another tokenizer's prompts
    assert reusable_for(tiny_model, str(other), tokenizer=tiny_model)  # unless --tokenizer fixes one for all
    assert not reusable_for(tiny_model, "Qwen/Qwen2.5-0.5B", tokenizer=None)  # a hub id: its own workers


def synthetic_config(models: list[str], output: Path, **flat) -> EvalConfig:
    return from_flat(EvalConfig, {"models": ",".join(models), "tasks": "synthetic", "limit": 4, "samples": 2,
                                  "max_new_tokens": 16, "generator_backend": "transformers", "device": "cpu",
                                  "num_verifiers": 1, "output_dir": str(output), **flat})


def test_the_next_checkpoint_and_the_next_evaluation_reuse_the_actors_and_sample_as_their_own_would(
        ray_cluster, tiny_model, retrained_model, tmp_path):
    forced = dict(names="tiny-forced", force_answer=True, max_new_tokens=8, forced_answer_tokens=4)
    prompted = dict(names="tiny-prompted", prompt_budget=8)
    # room for the forced run's budget (8 + 4 + 64 > 16): the plain run's actors fit it
    with EvalActorCache(generation_budget(synthetic_config([tiny_model], tmp_path, **forced))) as actors:
        evaluate(synthetic_config([tiny_model, retrained_model], tmp_path / "both"), actors=actors)
        kept = actors.current.actors
        # the sweep's forced budgets: the first model again, answers forced at a smaller budget, on the same actors
        evaluate(synthetic_config([tiny_model], tmp_path / "forced", **forced), actors=actors)
        assert actors.current.model_path == tiny_model
        # the comparison's prompted budget: the same problems, every prompt rewritten, on the same actors
        evaluate(synthetic_config([retrained_model], tmp_path / "prompted", **prompted), actors=actors)
        assert actors.started == 1 and actors.current.actors is kept
        assert all("less than 8 tokens" in example.prompt for example in actors.current.tasks["synthetic"].examples)
    assert actors.current is None  # stopped on leaving the block
    evaluate(synthetic_config([retrained_model], tmp_path / "alone"))
    evaluate(synthetic_config([tiny_model], tmp_path / "forced-alone", **forced))
    evaluate(synthetic_config([retrained_model], tmp_path / "prompted-alone", **prompted))
    both, alone = records_by_model(tmp_path / "both" / RECORDS), records_by_model(tmp_path / "alone" / RECORDS)
    first, second = (both[Path(path).name] for path in (tiny_model, retrained_model))
    assert same_records(second, alone[Path(retrained_model).name])
    assert not same_records(second, first)  # the same seeds: equal records would mean the weights never changed
    # the first model's weights loaded back into the workers: its forced samples are those of its own workers
    assert same_records(records_by_model(tmp_path / "forced" / RECORDS)["tiny-forced"],
                        records_by_model(tmp_path / "forced-alone" / RECORDS)["tiny-forced"])
    # the prompted samples are those of actors started for them, and not the plain ones: the new prompts were used
    prompted_kept = records_by_model(tmp_path / "prompted" / RECORDS)["tiny-prompted"]
    assert same_records(prompted_kept, records_by_model(tmp_path / "prompted-alone" / RECORDS)["tiny-prompted"])
    assert not same_records(prompted_kept, second)


def test_actor_settings_leave_out_the_budget_sampling_and_prompts_but_not_the_problems(tmp_path):
    plain = synthetic_config(["m"], tmp_path)
    same = [dict(force_answer=True, max_new_tokens=8), dict(temperature=1.0), dict(limit=2), dict(names="x"),
            dict(prompt_budget=8), dict(prompt_budget=8, budget_wording="l1")]
    other = [dict(tasks="gsm8k"), dict(num_verifiers=2), dict(seed=1),
             dict(generator_backend="vllm"), dict(answer_extraction="paper")]
    for flat in same:
        assert actor_settings(synthetic_config(["m"], tmp_path, **flat), "cpu") == actor_settings(plain, "cpu"), flat
    for flat in other:
        assert actor_settings(synthetic_config(["m"], tmp_path, **flat), "cpu") != actor_settings(plain, "cpu"), flat
    assert actor_settings(plain, "cuda") != actor_settings(plain, "cpu")
    forced = synthetic_config(["m"], tmp_path, force_answer=True, forced_answer_tokens=4)
    assert generation_budget(forced) == 16 + 4 + 64 and generation_budget(plain) == 16
