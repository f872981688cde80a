"""Records contract, crash-safe storage and resume, and the metrics of PAPER.md §4 / §6.1."""

import json
import math

import pyarrow.parquet as pq
import pytest

from ray_effreason import evaluation
from ray_effreason.evaluation import (
    RECORD_SCHEMA,
    append_records,
    completed_keys,
    compute_metrics,
    normalize_to_base,
    pass_at_k,
    read_records,
    read_summary,
    records_to_table,
    write_summary,
)


def make_record(**overrides):
    record = {"model": "base", "task": "gsm8k", "problem_id": "p0", "sample_index": 0, "num_tokens": 100,
              "finish_reason": "stop", "extracted_answer": "4", "correct": True, "level": None, "min_tokens": None}
    record.update(overrides)
    return record


def grid_records(model, task, problems, samples, tokens=100):
    return [make_record(model=model, task=task, problem_id=f"p{p}", sample_index=s, num_tokens=tokens)
            for p in range(problems) for s in range(samples)]


# ----------------------------------------------------------------------------------------------
# Records and storage

def test_records_round_trip_through_parquet_unchanged(tmp_path):
    records = [make_record(), make_record(sample_index=1, extracted_answer=None, correct=False,
                                          finish_reason="length", level=3, min_tokens=40)]
    append_records(tmp_path / "records.parquet", records)
    table = read_records(tmp_path / "records.parquet")
    assert table.schema == RECORD_SCHEMA
    assert table.to_pylist() == records


@pytest.mark.parametrize("field, value, expected", [
    ("num_tokens", "12", "record 2, field 'num_tokens'"),
    ("num_tokens", -1, "record 2, field 'num_tokens'"),
    ("correct", 1, "record 2, field 'correct'"),
    ("finish_reason", "eos", "record 2, field 'finish_reason'"),
    ("level", 1.5, "record 2, field 'level'"),
    ("sample_index", True, "record 2, field 'sample_index'"),
    ("model", None, "record 2, field 'model'"),
    ("extracted_answer", 4, "record 2, field 'extracted_answer'"),
    ("min_tokens", 0, "record 2, field 'min_tokens'"),
])
def test_records_to_table_bad_record_names_index_and_field(field, value, expected):
    records = [make_record(), make_record(sample_index=1), make_record(**{"sample_index": 2, field: value})]
    with pytest.raises(ValueError, match=expected):
        records_to_table(records)


def test_records_to_table_missing_or_unknown_field_named():
    missing = make_record()
    del missing["correct"]
    with pytest.raises(ValueError, match="record 1, field 'correct': missing"):
        records_to_table([make_record(), missing])
    with pytest.raises(ValueError, match="record 0, field 'tokens': unknown field"):
        records_to_table([make_record(tokens=3)])


def test_append_twice_with_overlap_resumes_without_duplicates(tmp_path):
    path = tmp_path / "records.parquet"
    first = grid_records("base", "gsm8k", problems=3, samples=2)
    append_records(path, first)
    assert completed_keys(read_records(path)) == {("base", "gsm8k", f"p{p}", s) for p in range(3) for s in range(2)}
    # A rerun that ignored completed_keys re-writes p2 (different tokens) and adds p3: the first copy wins.
    second = [make_record(problem_id="p2", sample_index=s, num_tokens=999) for s in range(2)] + \
        [make_record(problem_id="p3", sample_index=s) for s in range(2)]
    append_records(path, second)
    table = read_records(path)
    assert sorted(p.name for p in path.iterdir()) == ["part-000000.parquet", "part-000001.parquet"]
    assert table.num_rows == 8
    assert len(completed_keys(table)) == 8
    assert 999 not in table.column("num_tokens").to_pylist()


def test_append_killed_midway_keeps_earlier_parts_and_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "records.parquet"
    append_records(path, grid_records("base", "gsm8k", problems=2, samples=1))
    real_write = pq.write_table

    def write_then_die(table, where, **kwargs):  # fault injection: the process dies after writing
        real_write(table, where, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation.pq, "write_table", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        append_records(path, [make_record(problem_id="p9")])
    assert [p.name for p in path.iterdir()] == ["part-000000.parquet"]
    assert read_records(path).num_rows == 2


def test_read_records_ignores_torn_temp_file_from_hard_kill(tmp_path):
    path = tmp_path / "records.parquet"
    append_records(path, [make_record()])
    (path / ".tmp-deadbeef.parquet").write_bytes(b"PAR1 torn write")  # SIGKILL before the rename
    append_records(path, [make_record(problem_id="p1")])
    assert read_records(path).column("problem_id").to_pylist() == ["p0", "p1"]


def test_read_records_missing_path_raises_unless_missing_ok(tmp_path):
    with pytest.raises(FileNotFoundError, match="records not found"):
        read_records(tmp_path / "nope")
    empty = read_records(tmp_path / "nope", missing_ok=True)
    assert empty.num_rows == 0 and empty.schema == RECORD_SCHEMA and completed_keys(empty) == set()


def test_read_records_list_of_paths_concatenates_directories_and_files(tmp_path):
    append_records(tmp_path / "a", [make_record(model="a")])
    pq.write_table(records_to_table([make_record(model="b")]), tmp_path / "b.parquet")
    table = read_records([tmp_path / "a", tmp_path / "b.parquet"])
    assert table.column("model").to_pylist() == ["a", "b"]


def test_append_empty_batch_writes_nothing(tmp_path):
    assert append_records(tmp_path / "records.parquet", []) is None
    assert not (tmp_path / "records.parquet").exists()


# ----------------------------------------------------------------------------------------------
# Metrics

def test_pass_at_k_matches_binomial_formula():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="k must be in"):
        pass_at_k(3, 1, 4)


def test_compute_metrics_hand_built_records():
    # p0: 2 samples, 1 correct (tokens 100 correct, 300 wrong, truncated); p1: 4 samples, all wrong
    # (tokens 10 each); level 1 and 2; answers: p1 votes "7" x3 (wrong), p0 tie "4"/"5" -> first ("4", correct).
    records = [
        make_record(problem_id="p0", sample_index=0, num_tokens=100, correct=True, extracted_answer="4", level=1,
                    min_tokens=50),
        make_record(problem_id="p0", sample_index=1, num_tokens=300, correct=False, finish_reason="length",
                    extracted_answer="5", level=1, min_tokens=50),
    ] + [make_record(problem_id="p1", sample_index=s, num_tokens=10, correct=False,
                     extracted_answer="7" if s < 3 else None, level=2, min_tokens=5) for s in range(4)]
    metrics = compute_metrics(records_to_table(records))["models"]["base"]["gsm8k"]
    assert metrics["n_problems"] == 2 and metrics["n_samples"] == 6
    assert metrics["samples_per_problem"] == [2, 4]
    assert metrics["accuracy"] == pytest.approx(1 / 6)  # over ALL samples
    # pass@1 = mean(1/2, 0); pass@2 = mean(1, 0); pass@3,4 only p1 has that many samples.
    assert metrics["pass_at_k"] == pytest.approx({"1": 0.25, "2": 0.5, "3": 0.0, "4": 0.0})
    assert metrics["majority_accuracy"] == pytest.approx(0.5)
    # PAPER §4 problem-mean: mean(200, 10) = 105, not the sample mean 440/6.
    assert metrics["mean_tokens"] == pytest.approx(105.0)
    assert metrics["mean_tokens_correct"] == pytest.approx(100.0)
    assert metrics["truncation_rate"] == pytest.approx(1 / 6)
    assert metrics["tokens_over_min_tokens"] == pytest.approx((200 / 50 + 10 / 5) / 2)
    assert metrics["tokens_over_min_tokens_correct"] == pytest.approx(2.0)
    level_1, level_2 = metrics["by_level"]["1"], metrics["by_level"]["2"]
    assert (level_1["n_problems"], level_1["accuracy"], level_1["mean_tokens"]) == (1, 0.5, 200.0)
    assert (level_2["n_samples"], level_2["accuracy"], level_2["mean_tokens_correct"]) == (4, 0.0, None)


def test_compute_metrics_duplicate_rows_keep_first():
    table = records_to_table([make_record(num_tokens=10), make_record(num_tokens=999, correct=False)])
    metrics = compute_metrics(table)["models"]["base"]["gsm8k"]
    assert (metrics["n_samples"], metrics["mean_tokens"], metrics["accuracy"]) == (1, 10.0, 1.0)


# PAPER §6.1, 7B: (accuracy %, mean tokens) per dataset.
PAPER_7B = {
    "full": {"gsm8k": (92.5, 1625), "math500": (93.3, 4038), "aime2024": (55.6, 13162)},
    "alpha_0.1": {"gsm8k": (91.7, 809), "math500": (92.0, 2821), "aime2024": (51.3, 10884)},
    "alpha_0.2": {"gsm8k": (88.8, 247), "math500": (88.2, 1972), "aime2024": (53.3, 9194)},
}


def paper_records():
    """1000 one-sample problems per (model, task): accuracy 92.5% = 925 correct, constant tokens."""
    records = []
    for model, tasks in PAPER_7B.items():
        for task, (accuracy, tokens) in tasks.items():
            correct = round(accuracy * 10)
            records += [make_record(model=model, task=task, problem_id=str(p), num_tokens=tokens,
                                    correct=p < correct) for p in range(1000)]
    return records


@pytest.mark.parametrize("model, mean_of_ratios, ratio_of_sums", [
    ("alpha_0.2", (44.7, 95.4), (60.6, 95.3)),
    ("alpha_0.1", (67.5, 96.6), (77.0, 97.2)),
])
def test_compute_metrics_normalizations_reproduce_paper_section_6_1(tmp_path, model, mean_of_ratios,
                                                                    ratio_of_sums):
    append_records(tmp_path / "records.parquet", paper_records())
    relative = compute_metrics(read_records(tmp_path / "records.parquet"), base_model="full")["relative"]
    normalized = relative[model]
    assert normalized["tasks"] == ["aime2024", "gsm8k", "math500"]
    assert normalized["mean_of_ratios"]["tokens_pct"] == pytest.approx(mean_of_ratios[0], abs=0.3)
    assert normalized["mean_of_ratios"]["accuracy_pct"] == pytest.approx(mean_of_ratios[1], abs=0.3)
    assert normalized["ratio_of_sums"]["tokens_pct"] == pytest.approx(ratio_of_sums[0], abs=0.3)
    assert normalized["ratio_of_sums"]["accuracy_pct"] == pytest.approx(ratio_of_sums[1], abs=0.3)
    # Per task: GSM8K tokens -85% at alpha 0.2 (PAPER §6.1 table).
    if model == "alpha_0.2":
        assert normalized["per_task"]["gsm8k"]["tokens_pct"] == pytest.approx(100 * 247 / 1625)
    assert relative["full"]["ratio_of_sums"] == {"tokens_pct": 100.0, "accuracy_pct": 100.0}


def test_normalize_to_base_combines_only_shared_tasks_and_zero_base_is_none():
    base = {"a": {"mean_tokens": 100.0, "accuracy": 0.0}, "b": {"mean_tokens": 200.0, "accuracy": 0.5}}
    model = {"a": {"mean_tokens": 50.0, "accuracy": 0.5}, "c": {"mean_tokens": 1.0, "accuracy": 1.0}}
    result = normalize_to_base(model, base)
    assert result["tasks"] == ["a"]
    assert result["per_task"]["a"] == {"tokens_pct": 50.0, "accuracy_pct": None}
    assert result["mean_of_ratios"] == {"tokens_pct": 50.0, "accuracy_pct": None}
    assert result["ratio_of_sums"] == {"tokens_pct": 50.0, "accuracy_pct": None}


def test_compute_metrics_unknown_base_model_lists_models():
    with pytest.raises(ValueError, match=r"unknown base_model 'nope'.*\['base'\]"):
        compute_metrics(records_to_table([make_record()]), base_model="nope")


def test_write_summary_is_strict_json_and_round_trips(tmp_path):
    summary = compute_metrics(records_to_table(grid_records("base", "gsm8k", 2, 3) +
                                                grid_records("small", "gsm8k", 2, 3, tokens=50)), base_model="base")
    path = write_summary(tmp_path / "out", summary, metadata={"temperature": 0.6})
    text = path.read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    loaded = read_summary(tmp_path / "out")
    assert loaded["metadata"] == {"temperature": 0.6}
    assert loaded["relative"]["small"]["per_task"]["gsm8k"]["tokens_pct"] == 50.0
    assert {key: loaded[key] for key in summary} == summary
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["summary.json"]


def test_compute_metrics_accepts_table_with_reordered_columns():
    table = records_to_table([make_record()])
    reordered = table.select(list(reversed(table.column_names)))
    assert compute_metrics(reordered) == compute_metrics(table)
