"""Evaluation records -> metrics. Pure apart from the small parquet/JSON readers and writers.

The runner (Ray actors, jobs/evaluate.py) generates and grades; this module never generates. It:

1. fixes the record contract: one row per generated sample, `RECORD_SCHEMA`;
2. stores records crash-safely: `append_records` writes each batch as a new part file of a
   directory dataset (`records.parquet/part-000012.parquet`), written to a hidden temp file and
   then renamed, so a job killed midway loses nothing already written and never leaves a corrupt
   part; `read_records` reads every part and drops duplicate keys (keeping the first);
3. tells the runner what is done (`completed_keys`), so a rerun resumes and writes no duplicates;
4. computes the paper's metrics (`compute_metrics`, PAPER.md §4) and the two normalizations
   against a base model (PAPER.md §4 and §6.1), and writes them to `summary.json`.

Deliberate choices, relative to the paper's `evaluate_model.py` (PAPER.md §4):
- `accuracy` is the mean correctness over ALL samples (the paper's `average_pass_rate`).
- `mean_tokens` is the paper's `avg_tokens`: mean over problems of the mean over that problem's
  samples, counting all generated tokens of all samples (not only correct ones). With the same
  number of samples per problem (the paper's protocol) it equals the plain sample mean.
- `pass_at_k` uses the unbiased estimator of Chen et al. (2021) per problem, averaged over the
  problems that have at least k samples (the paper prints a per-sample-index pass@k instead).
- `majority_accuracy` votes on the exact `extracted_answer` string (answers that are equivalent but
  spelled differently split the vote); ties go to the answer seen at the lowest sample_index.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# ----------------------------------------------------------------------------------------------
# The record contract

RECORD_SCHEMA = pa.schema([
    pa.field("model", pa.string(), nullable=False),
    pa.field("task", pa.string(), nullable=False),
    pa.field("problem_id", pa.string(), nullable=False),
    pa.field("sample_index", pa.int64(), nullable=False),
    pa.field("num_tokens", pa.int64(), nullable=False),  # generated tokens, EOS included if emitted
    pa.field("finish_reason", pa.string(), nullable=False),  # "stop" | "length"
    pa.field("extracted_answer", pa.string(), nullable=True),
    pa.field("correct", pa.bool_(), nullable=False),
    pa.field("level", pa.int64(), nullable=True),  # MATH level 1-5, synthetic level, ...
    pa.field("min_tokens", pa.int64(), nullable=True),  # synthetic task only
])
RECORD_KEY = ("model", "task", "problem_id", "sample_index")
FINISH_REASONS = ("stop", "length")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_field(name: str, value: Any) -> Any:
    """The value as a plain Python object, or ValueError saying what is wrong (without the index)."""
    if name in ("model", "task", "problem_id"):
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a non-empty str, got {value!r}")
        return value
    if name in ("sample_index", "num_tokens"):
        if not _is_int(value) or value < 0:
            raise ValueError(f"expected an int >= 0, got {value!r}")
        return int(value)
    if name == "finish_reason":
        if value not in FINISH_REASONS:
            raise ValueError(f"expected one of {list(FINISH_REASONS)}, got {value!r}")
        return value
    if name == "extracted_answer":
        if value is not None and not isinstance(value, str):
            raise ValueError(f"expected a str or None, got {value!r}")
        return value
    if name == "correct":
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"expected a bool, got {value!r}")
        return bool(value)
    if name in ("level", "min_tokens"):
        if value is not None and not _is_int(value):
            raise ValueError(f"expected an int or None, got {value!r}")
        if name == "min_tokens" and value is not None and value <= 0:
            raise ValueError(f"expected an int > 0 or None, got {value!r}")
        return None if value is None else int(value)
    raise ValueError(f"unknown field; valid fields: {RECORD_SCHEMA.names}")


def records_to_table(records: Sequence[dict[str, Any]]) -> pa.Table:
    """Validate records against RECORD_SCHEMA and build a table; a bad record raises ValueError.

    The error names the record's index and the field, e.g. `record 3, field 'num_tokens': ...`.

    >>> table = records_to_table([{"model": "m", "task": "gsm8k", "problem_id": "0", "sample_index": 0,
    ...     "num_tokens": 12, "finish_reason": "stop", "extracted_answer": "4", "correct": True,
    ...     "level": None, "min_tokens": None}])
    >>> table.num_rows, table.schema == RECORD_SCHEMA
    (1, True)
    """
    columns: dict[str, list[Any]] = {name: [] for name in RECORD_SCHEMA.names}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"record {index}: expected a dict, got {type(record).__name__}")
        missing = [name for name in RECORD_SCHEMA.names if name not in record]
        if missing:
            raise ValueError(f"record {index}, field {missing[0]!r}: missing (all missing: {missing})")
        unknown = sorted(set(record) - set(RECORD_SCHEMA.names))
        if unknown:
            raise ValueError(f"record {index}, field {unknown[0]!r}: unknown field; valid fields: "
                             f"{RECORD_SCHEMA.names}")
        for name in RECORD_SCHEMA.names:
            try:
                columns[name].append(_check_field(name, record[name]))
            except ValueError as error:
                raise ValueError(f"record {index}, field {name!r}: {error}") from None
    return pa.table(columns, schema=RECORD_SCHEMA)


# ----------------------------------------------------------------------------------------------
# Storage: a directory of parquet part files

_PART = re.compile(r"^part-(\d+)\.parquet$")


def _part_files(directory: Path) -> list[Path]:
    """Finished part files in append order. Temp files start with '.' and never match."""
    parts = [(int(match.group(1)), path) for path in directory.iterdir()
             if (match := _PART.match(path.name)) and path.is_file()]
    return [path for _, path in sorted(parts)]


def append_records(path: str | Path, records: Sequence[dict[str, Any]] | pa.Table) -> Path | None:
    """Append one batch as a new part file of the dataset directory `path`; returns the part's path.

    Crash safety: the batch is written to a hidden temp file in the same directory, fsynced, then
    renamed into place (atomic on POSIX), so a killed job leaves either the whole part or nothing
    (a stray `.tmp-*` file, which readers ignore). Meant for one writer per directory (the driver);
    two concurrent writers could pick the same part number. An empty batch writes nothing (None).
    """
    table = records if isinstance(records, pa.Table) else records_to_table(records)
    table = table.select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA)
    if table.num_rows == 0:
        return None
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    existing = _part_files(directory)
    next_number = int(_PART.match(existing[-1].name).group(1)) + 1 if existing else 0
    final = directory / f"part-{next_number:06d}.parquet"
    temp = directory / f".tmp-{uuid.uuid4().hex}.parquet"
    try:
        pq.write_table(table, temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    return final


def drop_duplicate_records(table: pa.Table) -> pa.Table:
    """Keep the first row of each (model, task, problem_id, sample_index), in table order."""
    if table.num_rows == 0:
        return table
    first_rows = (table.select(list(RECORD_KEY))
                  .append_column("_row", pa.array(np.arange(table.num_rows)))
                  .group_by(list(RECORD_KEY), use_threads=False)
                  .aggregate([("_row", "min")]))
    keep = np.sort(first_rows.column("_row_min").to_numpy())
    return table if len(keep) == table.num_rows else table.take(pa.array(keep))


def read_records(paths: str | Path | Iterable[str | Path], missing_ok: bool = False) -> pa.Table:
    """Read a records dataset directory (all its parts), a single parquet file, or a list of them.

    Rows keep append order; duplicate keys are dropped keeping the first. A missing path raises
    FileNotFoundError unless missing_ok=True (then it contributes no rows).
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    tables = [RECORD_SCHEMA.empty_table()]
    for path in map(Path, paths):
        if not path.exists():
            if missing_ok:
                continue
            raise FileNotFoundError(f"records not found: {path}")
        for file in _part_files(path) if path.is_dir() else [path]:
            tables.append(pq.read_table(file).select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA))
    return drop_duplicate_records(pa.concat_tables(tables))


def completed_keys(table: pa.Table) -> set[tuple[str, str, str, int]]:
    """The (model, task, problem_id, sample_index) keys already in `table`: what a rerun skips."""
    columns = [table.column(name).to_pylist() for name in RECORD_KEY]
    return set(zip(*columns))


# ----------------------------------------------------------------------------------------------
# Metrics

def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k of one problem (Chen et al. 2021): 1 - C(n-c, k) / C(n, k).

    Computed as a product to avoid huge binomials.

    >>> pass_at_k(10, 0, 1), pass_at_k(10, 10, 5), round(pass_at_k(10, 3, 1), 6), round(pass_at_k(4, 1, 2), 6)
    (0.0, 1.0, 0.3, 0.5)
    """
    if not 1 <= k <= num_samples:
        raise ValueError(f"k must be in [1, {num_samples}], got {k}")
    if num_samples - num_correct < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(num_samples - num_correct + 1, num_samples + 1)))


def _mean(values: Sequence[float]) -> float | None:
    """Mean, or None for no values (JSON has no NaN)."""
    return float(np.mean(values)) if len(values) else None


def _group_metrics(problems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Metrics of one group of problems (a task, or one difficulty level of it).

    `problems` maps problem_id -> its sample rows, sorted by sample_index.
    """
    samples = [row for rows in problems.values() for row in rows]
    correct_tokens = [row["num_tokens"] for row in samples if row["correct"]]
    max_samples = max(len(rows) for rows in problems.values())
    metrics: dict[str, Any] = {
        "n_problems": len(problems),
        "n_samples": len(samples),
        "samples_per_problem": [min(len(rows) for rows in problems.values()), max_samples],
        "accuracy": _mean([float(row["correct"]) for row in samples]),
        "pass_at_k": {
            str(k): _mean([pass_at_k(len(rows), sum(row["correct"] for row in rows), k)
                           for rows in problems.values() if len(rows) >= k])
            for k in range(1, max_samples + 1)
        },
        "majority_accuracy": _mean([_majority_correct(rows) for rows in problems.values()]),
        # PAPER §4 avg_tokens: mean over problems of the per-problem mean, all samples.
        "mean_tokens": _mean([np.mean([row["num_tokens"] for row in rows]) for rows in problems.values()]),
        # Its standard error over problems (the plots' 95% intervals: 1.96 of these).
        "mean_tokens_sem": _sem([np.mean([row["num_tokens"] for row in rows]) for rows in problems.values()]),
        "mean_tokens_correct": _mean(correct_tokens),
        "truncation_rate": _mean([float(row["finish_reason"] == "length") for row in samples]),
    }
    with_min = {pid: rows for pid, rows in problems.items() if rows[0]["min_tokens"] is not None}
    if with_min:
        # Synthetic task: tokens relative to the shortest correct trace (1.0 = as short as possible).
        metrics["tokens_over_min_tokens"] = _mean(
            [np.mean([row["num_tokens"] for row in rows]) / rows[0]["min_tokens"] for rows in with_min.values()])
        metrics["tokens_over_min_tokens_correct"] = _mean(
            [row["num_tokens"] / row["min_tokens"] for rows in with_min.values() for row in rows if row["correct"]])
        metrics["mean_min_tokens"] = _mean([rows[0]["min_tokens"] for rows in with_min.values()])  # the floor
    return metrics


def _sem(values: list[float]) -> float | None:
    """Standard error of the mean (sample std / sqrt(n)); None below two values."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None


def wilson_interval(successes: float, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (sound at 0% and 100%, unlike the normal approximation).

    >>> tuple(round(bound, 4) for bound in wilson_interval(270, 300))
    (0.8608, 0.9291)
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    """
    if trials == 0:
        return 0.0, 1.0
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    center = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return float(center - half), float(center + half)


def _majority_correct(rows: list[dict[str, Any]]) -> float:
    answers = [row["extracted_answer"] for row in rows if row["extracted_answer"] is not None]
    if not answers:
        return 0.0
    counts = Counter(answers)  # insertion order = sample order, so ties go to the earliest answer
    winner = max(counts, key=counts.get)
    return float(next(row["correct"] for row in rows if row["extracted_answer"] == winner))


def sample_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of one model on one task from its sample rows (record fields): the one place accuracy,
    tokens and per-level numbers are computed, for evaluation, the sweep, training logs and the tiny build.

    >>> rows = [{"problem_id": "a", "sample_index": i, "num_tokens": n, "finish_reason": "stop",
    ...          "extracted_answer": "1", "correct": c, "level": 1, "min_tokens": 4} for i, (n, c) in
    ...         enumerate([(4, True), (12, False)])]
    >>> metrics = sample_metrics(rows)
    >>> metrics["accuracy"], metrics["mean_tokens"], metrics["tokens_over_min_tokens"], list(metrics["by_level"])
    (0.5, 8.0, 2.0, ['1'])
    """
    problems: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(rows, key=lambda row: row["sample_index"]):
        problems[row["problem_id"]].append(row)
    metrics = _group_metrics(problems)
    levels: dict[int, dict[str, list]] = defaultdict(dict)
    for problem_id, problem_rows in problems.items():
        if problem_rows[0]["level"] is not None:
            levels[problem_rows[0]["level"]][problem_id] = problem_rows
    metrics["by_level"] = {str(level): _group_metrics(levels[level]) for level in sorted(levels)}
    return metrics


def normalize_to_base(model_tasks: dict[str, dict[str, Any]],
                      base_tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Tokens and accuracy of a model as % of the base model, per task and combined over tasks.

    Both combinations the paper's site uses (PAPER.md §4, §6.1): `mean_of_ratios` (the Figure 1
    scatter: mean over tasks of model/base) and `ratio_of_sums` (the bar chart: sum over tasks of
    the model's value / sum of the base's). Only tasks both models have are combined. A ratio with
    a zero base value is None.

    >>> base = {"a": {"mean_tokens": 100.0, "accuracy": 0.5}, "b": {"mean_tokens": 300.0, "accuracy": 1.0}}
    >>> model = {"a": {"mean_tokens": 50.0, "accuracy": 0.5}, "b": {"mean_tokens": 300.0, "accuracy": 0.5}}
    >>> result = normalize_to_base(model, base)
    >>> result["mean_of_ratios"]["tokens_pct"], result["ratio_of_sums"]["tokens_pct"]
    (75.0, 87.5)
    """
    tasks = sorted(set(model_tasks) & set(base_tasks))
    metrics = {"tokens_pct": "mean_tokens", "accuracy_pct": "accuracy"}  # output name -> metric
    per_task = {task: {name: _percent(model_tasks[task][metric], base_tasks[task][metric])
                       for name, metric in metrics.items()} for task in tasks}
    mean_of_ratios, ratio_of_sums = {}, {}
    for name, metric in metrics.items():
        ratios = [per_task[task][name] for task in tasks]
        mean_of_ratios[name] = None if not tasks or None in ratios else float(np.mean(ratios))
        model_values = [model_tasks[task][metric] for task in tasks]
        base_values = [base_tasks[task][metric] for task in tasks]
        ratio_of_sums[name] = (None if not tasks or None in model_values + base_values
                               else _percent(sum(model_values), sum(base_values)))
    return {"tasks": tasks, "per_task": per_task, "mean_of_ratios": mean_of_ratios, "ratio_of_sums": ratio_of_sums}


def _percent(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return 100.0 * value / base


def compute_metrics(table: pa.Table, base_model: str | None = None) -> dict[str, Any]:
    """All metrics of a records table, JSON-ready (no NaN; missing values are None).

    Returns {"base_model", "models": {model: {task: metrics}}, "relative": {model: normalize_to_base(...)}}.
    Each task's metrics hold n_problems, n_samples, samples_per_problem [min, max], accuracy,
    pass_at_k {"1": ..., "max": ...}, majority_accuracy, mean_tokens (PAPER §4 problem-mean),
    mean_tokens_correct, truncation_rate, tokens_over_min_tokens[_correct] (synthetic only), and
    by_level {"1": same metrics, ...}. `relative` is empty without a base model.
    """
    table = drop_duplicate_records(table.select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA))
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in table.to_pylist():
        grouped[row["model"]][row["task"]].append(row)
    models = {model: {task: sample_metrics(grouped[model][task]) for task in sorted(grouped[model])}
              for model in sorted(grouped)}
    relative: dict[str, Any] = {}
    if base_model is not None:
        if base_model not in models:
            raise ValueError(f"unknown base_model {base_model!r}; models in the records: {sorted(models)}")
        relative = {model: normalize_to_base(models[model], models[base_model]) for model in models}
    return {"base_model": base_model, "models": models, "relative": relative}


def write_summary(out_dir: str | Path, summary: dict[str, Any], metadata: dict[str, Any] | None = None) -> Path:
    """Write `summary.json` (strict JSON, atomically) to out_dir; `metadata` (e.g. the run config) is
    stored under "metadata". Returns the file's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = dict(summary)
    if metadata is not None:
        document["metadata"] = metadata
    path = out_dir / "summary.json"
    temp = out_dir / f".tmp-{uuid.uuid4().hex}.json"
    try:
        temp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def read_summary(path: str | Path) -> dict[str, Any]:
    """Load a summary.json (a file, or the directory holding it)."""
    path = Path(path)
    return json.loads((path / "summary.json" if path.is_dir() else path).read_text(encoding="utf-8"))
