"""Evaluation runner: models x tasks -> generate on Ray actors -> grade -> records -> summary and plots.

    0. check    the config, the model paths and every task's data, before any actor starts; a rerun
                must use the generation settings and the weights of the records already in the dir (eval_inputs.py)
    per model (on generation workers + a verifier pool in one placement group, kept for the next model, and
    the caller's next evaluation, when it fits them; the workers then load its weights: eval_actors.py):
    1. pending  (problem, sample_index) pairs not yet in DIR/records.parquet (a rerun resumes)
    2. generate `batch_size` problems at a time, every sample with its own seed
    3. force    with --force-answer: truncated samples are continued with a forced final answer
                (forced_answer.py)
    4. grade    the task's own grader (the one training uses), on the verifier pool; without forced answers
                each worker's completions as they stream back (verifier.GradingStream), as training does
    5. append   the batch's records as a new part file (a job killed midway loses nothing written)
    then: summary.json (evaluation.compute_metrics), summary.md and plots (report.summarize).

Protocol (PAPER.md §4): temperature 0.6, top_p 1.0, 32,768 new tokens, samples per problem GSM8K 1,
MATH500 3, AIME2024 10 (each task's `eval_samples`; the other tasks' are ours); the prompt is the chat
template with add_generation_prompt (§8, done by the generation worker).

Deliberate choices:
- `correct` is the grader's verdict on the text (`Grade.answer_correct`), like the paper's eval,
  which does NOT check EOS: a truncated sample whose text already holds the right last box counts
  as correct (training, by contrast, scores every truncated sample 0). A verdict of None (the gold
  answer cannot be parsed) is recorded as not correct and counted as "ungradable" in the log.
- `num_tokens` is every generated token, EOS included when emitted (the paper's `avg_tokens`).
- Seeds are `seeding.sample_seed(seed, task, problem_id, sample_index, purpose)`, so a sample is the
  same whatever the batch, the worker or the resume point, and every model sees the same seeds.
- The model name in the records is `names` when given (e.g. the same model at two budgets, to be
  merged with --report), else a local path's last component (more components when two models would
  share one) or a Hugging Face id as given. A resumed run must name its models the same way, or
  their samples are generated again under the new names.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import ray

from ray_effreason.answer_extraction import extract_last_boxed
from ray_effreason.config import EvalConfig
from ray_effreason.config_tree import to_dict
from ray_effreason.eval_actors import EvalActorCache, EvalActors, actor_settings, prompt_wording
from ray_effreason.eval_inputs import check_models, check_settings, check_weights, load_tasks, model_names
from ray_effreason.evaluation import append_records, completed_keys, read_records
from ray_effreason.seeding import sample_seed
from ray_effreason.tasks import Task, TaskSet
from ray_effreason.tasks.base import Example

# The actors (torch, transformers) and the report (matplotlib) are imported inside the functions that use them.
if TYPE_CHECKING:
    from ray_effreason.actors.launch import Actors

VERIFIER_CPUS = 0.25  # grading is light next to generation
RECORDS = "records.parquet"


# ----------------------------------------------------------------------------------------------
# 1-5. one model


def evaluation_actors(config: EvalConfig, model_path: str, device: str, budget: int) -> EvalActors:
    """New actors for `model_path`, with its tokenizer and the tasks loaded with it, and room for `budget` new
    tokens (at least `generation_budget(config)`: a forced answer needs room beyond max_new_tokens)."""
    from dataclasses import replace

    from transformers import AutoTokenizer

    from ray_effreason.actors.launch import start_actors

    tokenizer = AutoTokenizer.from_pretrained(config.model.tokenizer or model_path)
    # Loaded again: the synthetic task's min_tokens are counted in this model's tokenizer.
    tasks = load_tasks(config, tokenizer)
    actors = start_actors(name=f"eval-{uuid.uuid4().hex[:6]}",  # unique: evaluations may share a cluster
                          task=TaskSet(tasks), model_path=model_path, tokenizer_path=config.model.tokenizer,
                          device=device, rollout=replace(config.rollout, max_new_tokens=budget),
                          reward=config.reward, seed=config.seed, verifier_cpus=VERIFIER_CPUS)
    return EvalActors(actors, model_path, tokenizer, tasks, actor_settings(config, device), budget,
                      prompt_wording(config))


def evaluate_model(config: EvalConfig, session: EvalActors, model: str, pending: dict[str, list[tuple[Example, int]]],
                   totals: dict[str, int], records_path: Path) -> dict[str, int]:
    """Generate, grade and append the pending samples of one model; returns new samples per task."""
    generated: dict[str, int] = {}
    for name, task in session.tasks_for(config).items():
        if not pending[name]:
            continue
        examples = {example.id: example for example in task.examples}
        todo = [(examples[example.id], index) for example, index in pending[name]]
        generated[name] = run_task(session.actors, session.tokenizer, config, model, name, todo, totals[name],
                                   records_path)
    return generated


def run_task(actors: Actors, tokenizer: Any, config: EvalConfig, model: str, task: str,
             todo: list[tuple[Example, int]], total: int, records_path: Path) -> int:
    """Steps 2-5 for one task, `batch_size` problems at a time; returns the number of samples written."""
    from ray_effreason.actors.generator import SampleRequest
    from ray_effreason.actors.verifier import GradingStream
    from ray_effreason.forced_answer import force_answers
    from ray_effreason.progress import Progress

    problems = list(dict.fromkeys(example.id for example, _ in todo))
    written, ungradable = 0, 0
    progress = Progress(total, f"{model} {task}", unit="sample", done=total - len(todo), every_s=0)
    for start in range(0, len(problems), config.batch_size):
        batch_ids = set(problems[start:start + config.batch_size])
        batch = [(example, index) for example, index in todo if example.id in batch_ids]
        # ------------------------------------------------------------------ 2. generate
        seeds = [sample_seed(config.seed, task, example.id, index, "sample") for example, index in batch]
        requests = [SampleRequest(number, number, index, example.prompt, seed)
                    for number, ((example, index), seed) in enumerate(zip(batch, seeds))]
        clock = time.perf_counter()
        grading = GradingStream(actors.verifiers)  # 4 starts as the pieces come back (unless answers are forced)
        examples = [example for example, _ in batch]
        streamed = grading.completions_adder("eval", examples) if not config.force_answer else None
        completions = sorted(actors.generators.generate(requests, config.rollout.sampling(), on_chunk=streamed),
                             key=lambda c: c.request_id)
        # ------------------------------------------------------------------ 3. force
        if config.force_answer:
            forced_seeds = {number: sample_seed(config.seed, task, example.id, index, "forced")
                            for number, (example, index) in enumerate(batch)}
            answers = force_answers(actors.generators, completions, tokenizer,
                                    config.rollout.sampling(max_new_tokens=config.forced_answer_tokens), forced_seeds)
            grading.add([("eval", c.request_id) for c in completions], [text for text, _ in answers], examples,
                        [c.finish_reason for c in completions])
        else:
            answers = [(c.text, c.num_tokens) for c in completions]
        seconds = time.perf_counter() - clock
        # ------------------------------------------------------------------ 4. grade
        graded = grading.result()
        grades = [graded["eval", c.request_id] for c in completions]
        # ------------------------------------------------------------------ 5. append
        records = []
        for (example, index), c, (text, num_tokens), grade in zip(batch, completions, answers, grades):
            ungradable += grade.answer_correct is None
            records.append({"model": model, "task": task, "problem_id": example.id, "sample_index": index,
                            "num_tokens": num_tokens, "finish_reason": c.finish_reason,
                            "extracted_answer": extract_last_boxed(text), "correct": grade.answer_correct is True,
                            "level": example.level, "min_tokens": example.min_tokens})
        append_records(records_path, records)
        written += len(records)
        tokens = sum(num_tokens for _, num_tokens in answers)
        progress.update(len(records), f"{tokens:,} tokens in {seconds:.1f}s ({tokens / max(seconds, 1e-9):,.0f} "
                        "generated tokens/s)" + (f", {ungradable} ungradable (gold unparseable)" if ungradable else ""))
    progress.close()
    return written


def pending_samples(config: EvalConfig, tasks: dict[str, Task], model: str, done: set[tuple[str, str, str, int]]
                    ) -> tuple[dict[str, list[tuple[Example, int]]], dict[str, int]]:
    """Step 1: per task, the (problem, sample_index) pairs of `model` not yet recorded, and how many are wanted."""
    samples = config.samples_per_task
    pending, totals = {}, {}
    for name, task in tasks.items():
        wanted = [(example, index) for example in task.examples[:config.limit] for index in range(samples[name])]
        pending[name] = [(example, index) for example, index in wanted if (model, name, example.id, index) not in done]
        totals[name] = len(wanted)
    return pending, totals


# ----------------------------------------------------------------------------------------------
# the entry point


def evaluate(config: EvalConfig, labels: dict[str, dict[str, Any]] | None = None,
             loggers: Sequence[str] = (), actors: EvalActorCache | None = None) -> dict[str, Any]:
    """Evaluate every model on every task (resuming DIR/records.parquet); returns the summary dict.

    `labels`: extra per-model facts for summary.json (e.g. a family's alpha), keyed by record name.
    `loggers`: loggers.LOGGERS names that get the summary's numbers as `eval/<model>/<task>/<metric>`.
    `actors`: a cache whose actors this evaluation may use and leaves running for the caller's next one
    (eval_actors.py); none: actors of its own, stopped at the end.
    """
    from ray_effreason.actors.launch import cluster_device
    from ray_effreason.loggers import check_available, flat_scalars, log_summary
    from ray_effreason.report import summarize

    # ------------------------------------------------------------------ 0. check
    check_available(loggers)
    check_models(config.models)
    names = list(config.names) or model_names(config.models)
    tasks = load_tasks(config)
    output_dir = Path(config.output_dir)
    check_settings(config, output_dir)
    check_weights(names, config.models, output_dir)
    if not ray.is_initialized():
        ray.init()
    records_path = output_dir / RECORDS
    existing = read_records(records_path, missing_ok=True)
    done = completed_keys(existing)
    base = config.base_model or names[0]
    base = names[config.models.index(base)] if base in config.models else base
    if base not in names and base not in set(existing.column("model").to_pylist()):
        raise ValueError(f"--base-model {base!r} is neither in --models {names} nor in {records_path}")
    device = cluster_device(config.model.device)
    generated: dict[str, dict[str, int]] = {}
    # One set of actors while the models fit it (EvalActorCache): a family of checkpoints of one base pays the
    # actors' start-up once; each next model's weights are loaded into the same workers.
    cache = actors if actors is not None else EvalActorCache()
    try:
        for model_path, model in zip(config.models, names):
            # ------------------------------------------------------------------ 1. pending
            pending, totals = pending_samples(config, tasks, model, done)
            generated[model] = {name: 0 for name in tasks}
            if not any(pending.values()):
                print(f"[{model}] every sample is already in {records_path}: nothing to generate", flush=True)
                continue
            print(f"[{model}] {sum(map(len, pending.values()))} samples to generate on {device} ("
                  + ", ".join(f"{name} {len(items)}/{totals[name]}" for name, items in pending.items()) + ")",
                  flush=True)
            session = cache.actors_for(config, model_path, device,
                                       lambda budget, path=model_path: evaluation_actors(config, path, device, budget))
            # ------------------------------------------------------------------ 2-5.
            generated[model].update(evaluate_model(config, session, model, pending, totals, records_path))
    finally:
        if actors is None:
            cache.close()
    metadata = {"config": to_dict(config), "model_paths": dict(zip(names, config.models)), "generated": generated}
    summary = summarize(read_records(records_path, missing_ok=True), base, output_dir, metadata, labels)
    log_summary(loggers, output_dir, "eval", flat_scalars(summary["models"], "eval/", skip=("by_level",)))
    return summary
