"""Step 0 of the evaluation (eval_runner.py): its inputs checked before any actor starts.

Models (a local path or a hub id, named uniquely for the records), tasks (loaded with their data, the prompted
budget applied, ids unique), the generation settings an output dir was written with and the weights behind each
name it holds records of (a rerun must keep both: its records are skipped, not generated again).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

from ray_effreason.budget_prompts import with_budget
from ray_effreason.config import EvalConfig
from ray_effreason.config_tree import flat_fields
from ray_effreason.tasks import Task, load_task, task_class

SETTINGS = "generation.json"
WEIGHTS = "weights.json"  # record name -> weights_fingerprint of the model it was evaluated from
# What a record depends on besides (model, task, problem, sample): a resume must keep these (flat names).
GENERATION_SETTINGS = ("max_new_tokens", "temperature", "top_p", "force_answer", "forced_answer_tokens", "seed",
                       "tokenizer", "max_prompt_tokens", "prompt_budget", "budget_wording")
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")  # "org/name" or "name"


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
    """The file or directory `task` loads from: --task-path, else <data-dir>/<its data_subdir>, else None (hub)."""
    if config.task_path is not None:
        path = Path(config.task_path)
        if not path.exists():
            raise FileNotFoundError(f"--task-path: {path} does not exist")
        return path
    subdir = task_class(task).data_subdir
    if config.data_dir is None or subdir is None:  # no folder: the hub, or generated (synthetic)
        return None
    path = Path(config.data_dir) / subdir
    if not path.exists():
        raise FileNotFoundError(f"--data-dir: no {subdir}/ for task {task} (expected {path})")
    return path


def load_tasks(config: EvalConfig, tokenizer: Any | None = None) -> dict[str, Task]:
    """Every task of the config with its examples loaded, so bad data fails before actors start.

    `tokenizer` gives the synthetic task its `min_tokens` (its shortest trace, in that tokenizer).
    """
    if not config.tasks:
        raise ValueError("--tasks: give at least one task")
    tasks = {}
    for name in config.tasks:
        options = {"tokenizer": tokenizer} if name == "synthetic" and tokenizer is not None else {}
        task = load_task(name, path=task_data_path(config, name), **options)
        if config.prompt_budget is not None:  # the prompted-budget baseline, L1 models: the budget in every prompt
            task.examples = with_budget(task.examples, config.prompt_budget, config.budget_wording)
        ids = Counter(example.id for example in task.examples)
        repeated = [problem_id for problem_id, count in ids.items() if count > 1]
        if repeated:
            raise ValueError(f"task {name}: problem ids are not unique (e.g. {repeated[0]!r}); records are keyed by id")
        tasks[name] = task
    return tasks


def check_settings(config: EvalConfig, output_dir: Path) -> None:
    """Record the generation settings of a new output dir; refuse to resume one with other settings.

    Samples already recorded are skipped on a rerun, so changing e.g. --max-new-tokens in the same
    dir would silently mix two budgets in one table.
    """
    values = flat_fields(config)
    settings = {name: values[name] for name in GENERATION_SETTINGS}
    path = output_dir / SETTINGS
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        defaults = flat_fields(EvalConfig())  # a setting added since the dir was written had its default there
        saved = {name: saved.get(name, defaults[name]) for name in GENERATION_SETTINGS}
        changed = [name for name in GENERATION_SETTINGS if saved[name] != settings[name]]
        if changed:
            raise ValueError(f"--output-dir {output_dir} holds records made with other settings: "
                             + ", ".join(f"--{name.replace('_', '-')} {saved.get(name)!r} (now {settings[name]!r})"
                                         for name in changed)
                             + "; use another --output-dir (and --report to compare)")
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


FINGERPRINT_CHUNKS, FINGERPRINT_CHUNK_BYTES = 16, 1 << 16  # per weight file: 16 x 64 KiB, start to end


def weights_fingerprint(model: str) -> str:
    """What identifies the weights behind a model: a hub id as given; for a local directory, each weight file's
    name and size and a hash of its bytes: all of them up to 1 MiB, else 16 chunks of 64 KiB spread evenly from
    the first byte to the last. Copying the directory keeps it. Training changes every transformer layer, which
    holds nearly all the bytes the chunks land in; the head of a file (its safetensors header, embedding rows of
    tokens never seen) may not change. A 15 GB checkpoint costs 1 MiB of reading per file."""
    path = Path(model)
    if not path.is_dir():
        return model
    digest = hashlib.sha256()
    for file in sorted([*path.glob("*.safetensors"), *path.glob("*.bin")]):
        size = file.stat().st_size
        digest.update(f"{file.name}:{size};".encode())
        with file.open("rb") as handle:
            if size <= FINGERPRINT_CHUNKS * FINGERPRINT_CHUNK_BYTES:
                digest.update(handle.read())
                continue
            for index in range(FINGERPRINT_CHUNKS):
                handle.seek((size - FINGERPRINT_CHUNK_BYTES) * index // (FINGERPRINT_CHUNKS - 1))
                digest.update(handle.read(FINGERPRINT_CHUNK_BYTES))
    return digest.hexdigest()[:16]


def check_weights(names: Sequence[str], models: Sequence[str], output_dir: Path) -> None:
    """Record which weights each name is evaluated from; refuse a name whose weights changed since.

    Records are keyed by name and a rerun skips what is recorded, so a model trained again into the same
    directory (a sweep member deleted and retrained, a rebuilt base) would silently keep the old model's numbers.
    """
    path = output_dir / WEIGHTS
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    current = {name: weights_fingerprint(model) for name, model in zip(names, models)}
    for name, model in zip(names, models):
        if name in saved and saved[name] != current[name]:
            raise ValueError(f"--output-dir {output_dir} holds records of {name!r} made from other weights than "
                             f"{model}'s (fingerprint {saved[name]}, now {current[name]}): use another --output-dir, "
                             f"or delete {output_dir} to evaluate every model again")
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**saved, **current}, indent=2) + "\n", encoding="utf-8")
