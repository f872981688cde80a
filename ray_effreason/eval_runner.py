"""Evaluation runner: models x tasks -> generate on Ray actors -> grade -> records -> summary and plots.

    0. check    the config, the model paths and every task's data, before any actor starts; a rerun
                must use the generation settings of the records already in the dir (generation.json)
    per model (one set of actors each: generation workers + a verifier pool, in one placement group):
    1. pending  (problem, sample_index) pairs not yet in DIR/records.parquet (a rerun resumes)
    2. generate `batch_size` problems at a time, every sample with its own seed
    3. force    with --force-answer: truncated samples are continued with a forced final answer
    4. grade    the task's own grader (the one training uses), on the verifier pool
    5. append   the batch's records as a new part file (a job killed midway loses nothing written)
    then: summary.json (evaluation.compute_metrics), summary.md and plots (report.write_report).

Protocol (PAPER.md §4): temperature 0.6, top_p 1.0, 32,768 new tokens, samples per problem
GSM8K 1, MATH500 3, AIME2024 10; the prompt is the chat template with add_generation_prompt (§8,
done by the generation worker). The other tasks are not in the paper's code; their defaults are ours
(`DEFAULT_SAMPLES`).

Deliberate choices:
- `correct` is the grader's verdict on the text (`Grade.answer_correct`), like the paper's eval,
  which does NOT check EOS: a truncated sample whose text already holds the right last box counts
  as correct (training, by contrast, scores every truncated sample 0). A verdict of None (the gold
  answer cannot be parsed) is recorded as not correct and counted as "ungradable" in the log.
- `num_tokens` is every generated token, EOS included when emitted (the paper's `avg_tokens`).
- Seeds are a hash of (seed, task, problem_id, sample_index), so a sample is the same whatever the
  batch, the worker or the resume point, and every model sees the same seeds.
- The model name in the records is `names` when given (e.g. the same model at two budgets, to be
  merged with --report), else a local path's last component (more components when two models would
  share one) or a Hugging Face id as given. A resumed run must name its models the same way, or
  their samples are generated again under the new names.
- Forced answer (the "generation cutoff" baseline, PAPER.md §5: its construction is unpublished;
  this one is ours): a sample that hits `max_new_tokens` is continued from its prompt + completion
  + `\\n</think>\\n\\nFinal answer: \\boxed{` (without the close tag when no thinking is open) for
  at most `forced_answer_tokens` more tokens, and the combined text is graded. Its `num_tokens`
  counts both parts and the forced suffix; `finish_reason` stays "length" (RECORD_SCHEMA has no
  forced flag: in a forced-answer run every "length" record is a forced answer).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import ray

from ray_effreason.config import RolloutConfig, option, to_dict
from ray_effreason.evaluation import (append_records, completed_keys, compute_metrics, read_records, read_summary,
                                      write_summary)
from ray_effreason.tasks import load_task
from ray_effreason.tasks.base import Example, Task
from ray_effreason.verifiers import extract_last_boxed

# The actors (torch, transformers) and the report (matplotlib) are imported inside the functions that
# use them: verifier actors unpickle `TaskSet` from this module and should not pay seconds for them.
if TYPE_CHECKING:
    from ray_effreason.actors.generator import Completion
    from ray_effreason.actors.launch import Actors

# Samples per problem: GSM8K, MATH500 and AIME2024 as the paper (PAPER.md §4); the rest are ours.
DEFAULT_SAMPLES = {"gsm8k": 1, "math500": 3, "aime2024": 10, "amc23": 4, "commonsenseqa": 1,
                   "logical_deduction": 1, "synthetic": 1}
# Where each task's files sit under --data-dir (shared/data/README.md). synthetic is generated.
DATA_SUBDIRS = {"gsm8k": "gsm8k", "math500": "math500", "aime2024": "aime2024", "amc23": "amc23",
                "commonsenseqa": "commonsenseqa", "logical_deduction": "bbh_logical_deduction"}
VERIFIER_CPUS = 0.25  # grading is light next to generation
RECORDS = "records.parquet"
SETTINGS = "generation.json"
# What a record depends on besides (model, task, problem, sample): a resume must keep these.
GENERATION_SETTINGS = ("max_new_tokens", "temperature", "top_p", "force_answer", "forced_answer_tokens", "seed",
                       "tokenizer", "max_prompt_tokens")
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")  # "org/name" or "name"


@dataclass(frozen=True)
class EvalConfig:
    models: tuple[str, ...] = option((), "models to evaluate, comma-separated: local paths or Hugging Face ids")
    names: tuple[str, ...] = option((), "the models' names in the records, comma-separated, one per model; none: "
                                        "a path's last component (more if two clash) or the hub id")
    tasks: tuple[str, ...] = option(("gsm8k", "math500", "aime2024"),
                                    f"tasks, comma-separated; valid: {','.join(DEFAULT_SAMPLES)}")
    task_path: str | None = option(None, "a local JSONL file (or directory) for the one task in --tasks")
    data_dir: str | None = option(None, "directory with one folder per task, as shared/data; "
                                        "none: the Hugging Face hub")
    output_dir: str = option("runs/eval", "where records.parquet, summary.json, summary.md and plots go")
    samples: str | int | dict[str, int] | None = option(
        None, "samples per problem: an int for every task, or task=n pairs like gsm8k=1,math500=3 "
              f"overriding the defaults; none: {DEFAULT_SAMPLES} (PAPER.md §4 for the first three)")
    max_new_tokens: int = option(32768, "generation budget in tokens (the paper: 32768)")
    max_prompt_tokens: int = option(1024, "a prompt longer than this many tokens is an error, never cut")
    temperature: float = option(0.6, "sampling temperature (the paper: 0.6)")
    top_p: float = option(1.0, "nucleus sampling (the paper: 1.0)")
    limit: int | None = option(None, "evaluate only the first N problems of each task")
    force_answer: bool = option(False, "generation-cutoff baseline: continue truncated samples with "
                                       "'</think> Final answer: \\boxed{' and grade that")
    forced_answer_tokens: int = option(32, "token budget of a forced answer's continuation")
    tokenizer: str | None = option(None, "tokenizer for every model; none: each model's own "
                                         "(the paper uses the base model's)")
    base_model: str | None = option(None, "model the relative metrics are computed against; none: the first")
    num_generators: int = option(1, "generation worker actors per model (each a vLLM engine on GPU)")
    num_verifiers: int = option(2, "verifier actors grading in parallel")
    generator_backend: str = option("auto", "auto | vllm | transformers (auto: vllm on cuda, transformers on cpu)")
    tensor_parallel_size: int = option(1, "vLLM tensor parallel GPUs per generation worker")
    gpu_memory_utilization: float = option(0.85, "vLLM gpu_memory_utilization")
    generation_batch_size: int = option(64, "transformers backend: sequences per generate() call")
    batch_size: int = option(100, "problems per generate call: records are appended after each")
    seed: int = option(0, "seed of every sample's seed (the paper sets none)")
    device: str = option("auto", "auto | cpu | cuda")

    def __post_init__(self) -> None:
        # Comma-separated strings come from the command line; the normalized value is what is logged.
        object.__setattr__(self, "models", _split(self.models))
        object.__setattr__(self, "names", _split(self.names))
        object.__setattr__(self, "tasks", _split(self.tasks))
        if self.names and (len(self.names) != len(self.models) or len(set(self.names)) != len(self.names)):
            raise ValueError(f"--names: give one distinct name per model; got {list(self.names)} for "
                             f"{len(self.models)} models")
        unknown = [task for task in self.tasks if task not in DEFAULT_SAMPLES]
        if unknown or not self.tasks:
            raise ValueError(f"--tasks: unknown or no task {unknown}; valid names: {', '.join(DEFAULT_SAMPLES)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"--tasks: a task is listed twice: {list(self.tasks)}")
        if self.task_path is not None and len(self.tasks) != 1:
            raise ValueError(f"--task-path needs exactly one task in --tasks, got {list(self.tasks)}")
        object.__setattr__(self, "samples", parse_samples(self.samples, self.tasks))
        for name in ("max_new_tokens", "max_prompt_tokens", "forced_answer_tokens", "num_generators",
                     "num_verifiers", "batch_size", "generation_batch_size", "tensor_parallel_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"--limit must be > 0, got {self.limit}")
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be > 0 (sampling), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"--top-p must be in (0, 1], got {self.top_p}")
        for name, value, valid in (("device", self.device, ("auto", "cpu", "cuda")),
                                   ("generator-backend", self.generator_backend, ("auto", "vllm", "transformers"))):
            if value not in valid:
                raise ValueError(f"--{name}={value!r} is not valid; choose one of {list(valid)}")


def _split(value: str | Sequence[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() for item in items if item.strip())


def parse_samples(value: str | int | dict[str, int] | None, tasks: Sequence[str]) -> dict[str, int]:
    """Samples per problem for each task: the defaults, overridden by an int (all tasks) or task=n pairs.

    >>> parse_samples(None, ["gsm8k", "aime2024"])
    {'gsm8k': 1, 'aime2024': 10}
    >>> parse_samples("2", ["gsm8k", "aime2024"]), parse_samples("aime2024=4", ["gsm8k", "aime2024"])
    ({'gsm8k': 2, 'aime2024': 2}, {'gsm8k': 1, 'aime2024': 4})
    >>> parse_samples("mmlu=3", ["gsm8k"])
    Traceback (most recent call last):
    ...
    ValueError: --samples: 'mmlu' is not in --tasks ['gsm8k']
    """
    samples = {task: DEFAULT_SAMPLES[task] for task in tasks}
    if isinstance(value, str):
        value = value.strip()
        try:
            value = int(value) if "=" not in value else {
                name.strip(): int(count) for name, count in (pair.split("=", 1) for pair in value.split(",") if pair)}
        except ValueError:
            raise ValueError("--samples: expected an int or task=n pairs like gsm8k=1,math500=3, "
                             f"got {value!r}") from None
    if isinstance(value, int):
        value = {task: value for task in tasks}
    for task, count in (value or {}).items():
        if task not in samples:
            raise ValueError(f"--samples: {task!r} is not in --tasks {list(tasks)}")
        if count <= 0:
            raise ValueError(f"--samples: {task}={count} must be > 0")
        samples[task] = count
    return samples


# ----------------------------------------------------------------------------------------------
# 0. check: models, tasks, data


def model_names(models: Sequence[str], is_local: Callable[[str], bool] = os.path.exists) -> list[str]:
    """Names for the records: a local path's last component, a hub id as given; unique in the list.

    Local paths that share a last component get more components until they differ.

    >>> model_names(["runs/a/final", "runs/b/final", "org/model"], is_local=lambda m: m.startswith("runs"))
    ['a/final', 'b/final', 'org/model']
    """
    parts = [Path(os.path.abspath(model)).parts[1:] if is_local(model) else None for model in models]
    depth = [1] * len(models)
    while True:
        names = [model if part is None else "/".join(part[-size:]) for model, part, size in zip(models, parts, depth)]
        counts = Counter(names)
        clashes = [index for index, name in enumerate(names) if counts[name] > 1]
        if not clashes:
            return names
        grown = False
        for index in clashes:
            if parts[index] is not None and depth[index] < len(parts[index]):
                depth[index] += 1
                grown = True
        if not grown:
            raise ValueError(f"--models: {names[clashes[0]]!r} is listed twice")


def check_models(models: Sequence[str]) -> None:
    """A model is an existing local directory or looks like a hub id; anything else is a typo."""
    if not models:
        raise ValueError("--models: give at least one model (a local path or a Hugging Face id)")
    for model in models:
        if not os.path.exists(model) and not _HUB_ID.match(model):
            raise FileNotFoundError(f"--models: {model!r} is neither a local path nor a Hugging Face id")


def task_data_path(config: EvalConfig, task: str) -> Path | None:
    """The file or directory `task` loads from: --task-path, else <data-dir>/<folder>, else None (hub)."""
    if config.task_path is not None:
        path = Path(config.task_path)
        if not path.exists():
            raise FileNotFoundError(f"--task-path: {path} does not exist")
        return path
    if config.data_dir is None or task == "synthetic":  # synthetic problems are generated
        return None
    path = Path(config.data_dir) / DATA_SUBDIRS[task]
    if not path.exists():
        raise FileNotFoundError(f"--data-dir: no {DATA_SUBDIRS[task]}/ for task {task} (expected {path})")
    return path


def load_tasks(config: EvalConfig, tokenizer: Any | None = None) -> dict[str, Task]:
    """Every task of the config with its examples loaded, so bad data fails before actors start.

    `tokenizer` gives the synthetic task its `min_tokens` (its shortest trace, in that tokenizer).
    """
    tasks = {}
    for name in config.tasks:
        path = task_data_path(config, name)
        if name == "synthetic" and tokenizer is not None:
            from ray_effreason.tasks.synthetic import SyntheticArithmetic

            task: Task = SyntheticArithmetic(path=path, split="test", tokenizer=tokenizer)
        else:
            task = load_task(name, path=path, split="test")
        ids = Counter(example.id for example in task.examples)
        repeated = [problem_id for problem_id, count in ids.items() if count > 1]
        if repeated:
            raise ValueError(f"task {name}: problem ids are not unique (e.g. {repeated[0]!r}); records are keyed by id")
        tasks[name] = task
    return tasks


# ----------------------------------------------------------------------------------------------
# 1-5. one model


def sample_seed(seed: int, task: str, problem_id: str, sample_index: int, purpose: str = "sample") -> int:
    """A 32-bit seed from (seed, task, problem, sample): the same whatever the batch, worker or resume.

    >>> first = sample_seed(0, "gsm8k", "gsm8k-0", 0)
    >>> first == sample_seed(0, "gsm8k", "gsm8k-0", 0), first == sample_seed(0, "gsm8k", "gsm8k-0", 1)
    (True, False)
    """
    digest = hashlib.sha256(f"{seed}|{task}|{problem_id}|{sample_index}|{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


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


def force_answers(actors: Actors, completions: list[Completion], tokenizer: Any, config: EvalConfig,
                  seeds: dict[int, int]) -> list[tuple[str, int]]:
    """(text, num_tokens) per completion; truncated ones get a forced, graded final answer."""
    from ray_effreason.actors.generator import SampleRequest, SamplingConfig

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
    sampling = SamplingConfig(config.temperature, config.top_p, config.forced_answer_tokens, config.max_prompt_tokens)
    for answer in actors.generators.generate(requests, sampling):
        c, (suffix, suffix_tokens) = completions[answer.request_id], suffixes[answer.request_id]
        results[answer.request_id] = (c.text + suffix + answer.text, c.num_tokens + suffix_tokens + answer.num_tokens)
    return results


def rollout_config(config: EvalConfig) -> RolloutConfig:
    """The actors' settings; a forced answer needs room beyond max_new_tokens in vLLM's context."""
    extra = config.forced_answer_tokens + 64 if config.force_answer else 0  # 64: the suffix, generously
    return RolloutConfig(temperature=config.temperature, top_p=config.top_p,
                         max_new_tokens=config.max_new_tokens + extra, max_prompt_tokens=config.max_prompt_tokens,
                         num_generators=config.num_generators, generator_backend=config.generator_backend,
                         tensor_parallel_size=config.tensor_parallel_size,
                         gpu_memory_utilization=config.gpu_memory_utilization,
                         generation_batch_size=config.generation_batch_size)


class TaskSet(Task):
    """Several tasks behind one grader, so one verifier pool grades every task of a model.

    Each example is graded by the task it came from (found by the example itself, a frozen dataclass).
    """

    name = "task-set"

    def __init__(self, tasks: dict[str, Task]):
        super().__init__()
        self.tasks = tasks
        self.task_of: dict[Example, str] = {}
        for name, task in tasks.items():
            for example in task.examples:
                if self.task_of.setdefault(example, name) != name:
                    raise ValueError(f"example {example.id!r} is in tasks {self.task_of[example]} and {name}")

    def _load(self) -> list[Example]:
        return list(self.task_of)

    def grade(self, completion: str, example: Example) -> bool | None:
        return self.tasks[self.task_of[example]].grade(completion, example)


def stop_actors(actors: Actors) -> None:
    """Kill the generation workers and verifiers, free the placement group."""
    for worker in actors.generators.workers + actors.verifiers.workers:
        ray.kill(worker)
    ray.util.remove_placement_group(actors.placement_group)


def evaluate_model(config: EvalConfig, model_path: str, model: str, pending: dict[str, list[tuple[Example, int]]],
                   totals: dict[str, int], records_path: Path, device: str) -> dict[str, int]:
    """Generate, grade and append the pending samples of one model; returns new samples per task."""
    from transformers import AutoTokenizer

    from ray_effreason.actors.generator import SamplingConfig
    from ray_effreason.actors.launch import start_actors

    tokenizer = AutoTokenizer.from_pretrained(config.tokenizer or model_path)
    # Loaded again: the synthetic task's min_tokens are counted in this model's tokenizer.
    tasks = {name: task for name, task in load_tasks(config, tokenizer).items() if pending[name]}
    actors = start_actors(name=f"eval-{uuid.uuid4().hex[:6]}",  # unique: evaluations may share a cluster
                          task=TaskSet(tasks), model_path=model_path, tokenizer_path=config.tokenizer,
                          device=device, rollout=rollout_config(config), num_verifiers=config.num_verifiers,
                          seed=config.seed, verifier_cpus=VERIFIER_CPUS)
    sampling = SamplingConfig(config.temperature, config.top_p, config.max_new_tokens, config.max_prompt_tokens)
    generated: dict[str, int] = {}
    try:
        for name, task in tasks.items():
            examples = {example.id: example for example in task.examples}
            todo = [(examples[example.id], index) for example, index in pending[name]]
            generated[name] = run_task(actors, tokenizer, config, model, name, todo, totals[name], sampling,
                                       records_path)
    finally:
        stop_actors(actors)
    return generated


def run_task(actors: Actors, tokenizer: Any, config: EvalConfig, model: str, task: str,
             todo: list[tuple[Example, int]], total: int, sampling: Any, records_path: Path) -> int:
    """Steps 2-5 for one task, `batch_size` problems at a time; returns the number of samples written."""
    from ray_effreason.actors.generator import SampleRequest

    problems = list(dict.fromkeys(example.id for example, _ in todo))
    done, written, ungradable = total - len(todo), 0, 0
    for start in range(0, len(problems), config.batch_size):
        batch_ids = set(problems[start:start + config.batch_size])
        batch = [(example, index) for example, index in todo if example.id in batch_ids]
        seeds = [sample_seed(config.seed, task, example.id, index) for example, index in batch]
        requests = [SampleRequest(number, number, index, example.prompt, seed)
                    for number, ((example, index), seed) in enumerate(zip(batch, seeds))]
        clock = time.perf_counter()
        completions = sorted(actors.generators.generate(requests, sampling), key=lambda c: c.request_id)
        if config.force_answer:
            forced_seeds = {number: sample_seed(config.seed, task, example.id, index, "forced")
                            for number, (example, index) in enumerate(batch)}
            answers = force_answers(actors, completions, tokenizer, config, forced_seeds)
        else:
            answers = [(c.text, c.num_tokens) for c in completions]
        seconds = time.perf_counter() - clock
        grades = actors.verifiers.grade([text for text, _ in answers], [example for example, _ in batch],
                                        [c.finish_reason for c in completions])
        records = []
        for (example, index), c, (text, num_tokens), grade in zip(batch, completions, answers, grades):
            ungradable += grade.answer_correct is None
            records.append({"model": model, "task": task, "problem_id": example.id, "sample_index": index,
                            "num_tokens": num_tokens, "finish_reason": c.finish_reason,
                            "extracted_answer": extract_last_boxed(text), "correct": grade.answer_correct is True,
                            "level": example.level, "min_tokens": example.min_tokens})
        append_records(records_path, records)
        done, written = done + len(records), written + len(records)
        tokens = sum(num_tokens for _, num_tokens in answers)
        print(f"[{model}] {task}: {done}/{total} samples, {tokens:,} tokens in {seconds:.1f}s "
              f"({tokens / max(seconds, 1e-9):,.0f} generated tokens/s)"
              + (f", {ungradable} ungradable (gold unparseable)" if ungradable else ""), flush=True)
    return written


# ----------------------------------------------------------------------------------------------
# the entry points


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Evaluate every model on every task (resuming DIR/records.parquet); returns the summary dict."""
    from ray_effreason.actors.launch import cluster_device

    check_models(config.models)
    names = list(config.names) or model_names(config.models)
    tasks = load_tasks(config)
    output_dir = Path(config.output_dir)
    check_settings(config, output_dir)
    if not ray.is_initialized():
        ray.init()
    records_path = output_dir / RECORDS
    existing = read_records(records_path, missing_ok=True)
    done = completed_keys(existing)
    base = config.base_model or names[0]
    base = names[config.models.index(base)] if base in config.models else base
    if base not in names and base not in set(existing.column("model").to_pylist()):
        raise ValueError(f"--base-model {base!r} is neither in --models {names} nor in {records_path}")
    device = cluster_device(config.device)
    generated: dict[str, dict[str, int]] = {}
    for model_path, model in zip(config.models, names):
        pending, totals = {}, {}
        for name, task in tasks.items():
            wanted = [(example, index) for example in task.examples[:config.limit]
                      for index in range(config.samples[name])]
            pending[name] = [(example, index) for example, index in wanted
                             if (model, name, example.id, index) not in done]
            totals[name] = len(wanted)
        if not any(pending.values()):
            print(f"[{model}] every sample is already in {records_path}: nothing to generate", flush=True)
            generated[model] = {name: 0 for name in tasks}
            continue
        print(f"[{model}] {sum(map(len, pending.values()))} samples to generate on {device} "
              f"({', '.join(f'{name} {len(items)}/{totals[name]}' for name, items in pending.items())})", flush=True)
        generated[model] = {name: 0 for name in tasks}
        generated[model].update(evaluate_model(config, model_path, model, pending, totals, records_path, device))
    metadata = {"config": to_dict(config), "model_paths": dict(zip(names, config.models)), "generated": generated}
    return summarize(read_records(records_path, missing_ok=True), base, output_dir, metadata)


def check_settings(config: EvalConfig, output_dir: Path) -> None:
    """Record the generation settings of a new output dir; refuse to resume one with other settings.

    Samples already recorded are skipped on a rerun, so changing e.g. --max-new-tokens in the same
    dir would silently mix two budgets in one table.
    """
    settings = {name: getattr(config, name) for name in GENERATION_SETTINGS}
    path = output_dir / SETTINGS
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        changed = [name for name in GENERATION_SETTINGS if saved.get(name) != settings[name]]
        if changed:
            raise ValueError(f"--output-dir {output_dir} holds records made with other settings: "
                             + ", ".join(f"--{name.replace('_', '-')} {saved.get(name)!r} (now {settings[name]!r})"
                                         for name in changed)
                             + "; use another --output-dir (and --report to compare)")
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def summarize(table: Any, base_model: str | None, output_dir: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Metrics -> summary.json, summary.md, plots; prints the table and where the files are."""
    from ray_effreason.report import markdown_table, write_report

    if table.num_rows == 0:
        raise ValueError("no records to summarize")
    summary = compute_metrics(table, base_model)
    path = write_summary(output_dir, summary, metadata)
    files = write_report(summary, output_dir)
    print(markdown_table(summary))
    print("wrote " + ", ".join(str(file) for file in [path, *files.values()]), flush=True)
    return {**summary, "metadata": metadata}


def report_only(dirs: Sequence[str | Path], output_dir: str | Path, base_model: str | None = None) -> dict[str, Any]:
    """Re-draw tables and plots from the records of one or more evaluation dirs (merged), no actors.

    A dir is an evaluation output dir (holding records.parquet) or a records dataset itself. When the
    same sample is in several dirs the first dir's record is kept. The base model defaults to the
    first dir's summary.json base model, when it is among the records.
    """
    sources = []
    for directory in map(Path, dirs):
        if not directory.exists():
            raise FileNotFoundError(f"--report: {directory} does not exist")
        sources.append(directory / RECORDS if (directory / RECORDS).exists() else directory)
    table = read_records(sources)
    dropped = sum(read_records(source).num_rows for source in sources) - table.num_rows
    if dropped:
        print(f"warning: {dropped} records repeat a (model, task, problem, sample) of an earlier dir and were "
              "dropped; evaluate with distinct --names to compare them", flush=True)
    models = set(table.column("model").to_pylist())
    if base_model is None:
        for directory in map(Path, dirs):
            if (directory / "summary.json").is_file():
                base_model = read_summary(directory).get("base_model")
                break
        base_model = base_model if base_model in models else None
    if table.num_rows == 0:
        raise ValueError(f"--report: no records in {[str(source) for source in sources]}")
    return summarize(table, base_model, Path(output_dir), {"sources": [str(source) for source in sources]})
