"""Step 0 of the evaluation (eval_inputs.py): models, tasks and settings checked before actors start (sub-second)."""

import json
import shutil

import pytest

from ray_effreason.config import EvalConfig
from ray_effreason.config_tree import from_flat
from ray_effreason.eval_inputs import (
    SETTINGS,
    WEIGHTS,
    check_models,
    check_settings,
    check_weights,
    load_tasks,
    model_names,
    task_data_path,
    weights_fingerprint,
)


def test_model_names_same_basename_get_their_parent(tmp_path):
    for run in ("a", "b"):
        (tmp_path / run / "final").mkdir(parents=True)
    assert model_names([str(tmp_path / "a" / "final"), str(tmp_path / "b" / "final"), "org/final"]) == [
        "a/final", "b/final", "org/final"]
    with pytest.raises(ValueError, match="listed twice"):
        model_names(["org/x", "org/x"])


def test_a_model_that_is_neither_a_path_nor_a_hub_id_is_named(tmp_path):
    check_models([str(tmp_path), "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"])  # a directory and a hub id pass
    with pytest.raises(ValueError, match="--models: give at least one"):
        check_models([])
    with pytest.raises(FileNotFoundError, match="runs/missing/final"):
        check_models(["runs/missing/final"])  # looks like neither: three path components


def test_task_data_paths_name_the_flag_and_the_missing_folder(tmp_path, data_dir):
    assert task_data_path(EvalConfig(tasks=("gsm8k",), data_dir=str(data_dir)), "gsm8k") == data_dir / "gsm8k"
    assert task_data_path(EvalConfig(tasks=("synthetic",), data_dir=str(data_dir)), "synthetic") is None  # generated
    with pytest.raises(FileNotFoundError, match=r"--data-dir: no gsm8k/ for task gsm8k"):
        task_data_path(EvalConfig(tasks=("gsm8k",), data_dir=str(tmp_path)), "gsm8k")
    with pytest.raises(FileNotFoundError, match="--task-path"):
        task_data_path(EvalConfig(tasks=("gsm8k",), task_path=str(tmp_path / "none.jsonl")), "gsm8k")
    with pytest.raises(ValueError, match="--tasks: give at least one"):
        load_tasks(EvalConfig(tasks=()))


def test_a_new_output_dir_records_its_settings_and_a_rerun_must_keep_them(tmp_path):
    def budget(tokens: int) -> EvalConfig:
        return from_flat(EvalConfig, {"tasks": ("gsm8k",), "max_new_tokens": tokens})

    check_settings(budget(64), tmp_path)
    assert json.loads((tmp_path / SETTINGS).read_text())["max_new_tokens"] == 64
    check_settings(budget(64), tmp_path)  # the same settings resume
    with pytest.raises(ValueError, match=r"--max-new-tokens 64 \(now 128\)"):
        check_settings(budget(128), tmp_path)


def test_the_weights_fingerprint_follows_the_weights_not_the_path(tiny_model, retrained_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    assert weights_fingerprint(str(copy)) == weights_fingerprint(tiny_model)  # moved or copied: the same weights
    assert weights_fingerprint(retrained_model) != weights_fingerprint(tiny_model)  # trained further: others
    assert weights_fingerprint("org/model") == "org/model"  # a hub id as given


def test_the_fingerprint_reads_a_small_file_whole_and_a_large_one_from_start_to_end(tmp_path):
    def changed_at(size: int, offset: int) -> bool:
        data = bytearray(size)
        (tmp_path / "model.safetensors").write_bytes(bytes(data))
        before = weights_fingerprint(str(tmp_path))
        data[offset] = 1
        (tmp_path / "model.safetensors").write_bytes(bytes(data))
        return weights_fingerprint(str(tmp_path)) != before

    assert changed_at(1 << 20, 700_000)  # up to 1 MiB: every byte counts
    large = 64 << 20
    assert changed_at(large, 0) and changed_at(large, large - 1)  # the first and the last chunk
    assert changed_at(large, (large - (1 << 16)) * 8 // 15 + 100)  # a chunk in the middle


def test_a_rerun_refuses_a_name_whose_weights_changed(tiny_model, retrained_model, tmp_path):
    check_weights(["policy", "base"], [tiny_model, tiny_model], tmp_path)
    check_weights(["policy", "base", "other"], [tiny_model, tiny_model, retrained_model], tmp_path)  # resumes, adds
    assert set(json.loads((tmp_path / WEIGHTS).read_text())) == {"policy", "base", "other"}
    with pytest.raises(ValueError, match=r"records of 'policy' made from other weights"):
        check_weights(["policy"], [retrained_model], tmp_path)  # e.g. a sweep member deleted and trained again
