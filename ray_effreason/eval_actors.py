"""An evaluation's actors, kept from one model to the next and from one `evaluate` call to the next.

Generation workers and a verifier pool cost seconds to start (each process imports torch and transformers);
a family of checkpoints of one base, evaluated once plainly and again with forced answers (the sweep's thinking
budgets, the comparison's cutoffs) or with a budget stated in its prompts (the comparison's prompted and L1 rows),
needs them once. `EvalActorCache` keeps one set: the next model loads its weights into the same workers when
`reusable_for` says it fits them and the evaluation's `actor_settings` are the ones the actors were started with;
otherwise the set is stopped and a new one started. The prompts are not among those settings: the tasks are
loaded again with the new prompts (`EvalActors.tasks_for`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ray_effreason.config import EvalConfig
from ray_effreason.eval_inputs import load_tasks
from ray_effreason.tasks import Task

if TYPE_CHECKING:
    from ray_effreason.actors.launch import Actors

# config.json keys that name a checkpoint, not its architecture
_NAMING_KEYS = ("_name_or_path", "transformers_version")
# A forced answer's room in the context beyond its budget: the suffix, generously (forced_answer.py).
FORCED_ANSWER_ROOM = 64


@dataclass
class EvalActors:
    """An evaluation's actors (generation workers + a verifier pool grading every task), the tokenizer and the
    tasks loaded with it, what they were started with (`settings`) and the generation budget they hold room
    for (`budget`, tokens); `model_path` is the model whose weights the workers hold, `prompts` the wording of
    the loaded tasks' prompts."""

    actors: Actors
    model_path: str
    tokenizer: Any
    tasks: dict[str, Task]
    settings: tuple[Any, ...]
    budget: int
    prompts: tuple[Any, ...]  # prompt_wording() of the config `tasks` were loaded for

    def tasks_for(self, config: EvalConfig) -> dict[str, Task]:
        """`config`'s tasks in these workers' tokenizer: the loaded ones, or loaded again when its prompts differ (a
        prompted budget rewrites every prompt; the problems and their grading are the same, so the actors fit)."""
        if prompt_wording(config) != self.prompts:
            self.tasks, self.prompts = load_tasks(config, self.tokenizer), prompt_wording(config)
        return self.tasks


def generation_budget(config: EvalConfig) -> int:
    """Tokens a sample may take: the budget, plus a forced answer's continuation when answers are forced."""
    forced = config.forced_answer_tokens + FORCED_ANSWER_ROOM if config.force_answer else 0
    return config.rollout.max_new_tokens + forced


def actor_settings(config: EvalConfig, device: str) -> tuple[Any, ...]:
    """What an evaluation's actors are started with, but the generation budget: the workers (backend, count,
    sizes, seed, tokenizer), the verifiers (count, time limit, answer extraction) and the tasks they grade
    (which problems). Sampling settings and prompts travel with each call and are not part of it: a prompted
    budget's evaluation (the comparison's prompt_budget and L1 rows) runs on the plain evaluation's actors."""
    rollout, reward = config.rollout, config.reward
    return (device, config.model.tokenizer, config.seed, rollout.num_generators, rollout.generator_backend,
            rollout.tensor_parallel_size, rollout.gpu_memory_utilization, rollout.max_prompt_tokens,
            rollout.generation_batch_size, reward.num_verifiers, reward.grade_timeout_s, reward.answer_extraction,
            config.tasks, config.task_path, config.data_dir)


def prompt_wording(config: EvalConfig) -> tuple[Any, ...]:
    """What rewrites an evaluation's prompts (eval_inputs.load_tasks): a stated budget and its wording."""
    return (config.prompt_budget, config.budget_wording)


def reusable_for(loaded: str, model_path: str, tokenizer: str | None) -> bool:
    """Whether workers started from `loaded` can evaluate `model_path` after loading its weights: both local
    checkpoint dirs with the same config.json (but its naming keys) and, unless --tokenizer fixes one for all,
    tokenizers with the same vocabulary, special tokens and chat template (their tokenizer_config.json files
    differ in save-time keys); a hub id always gets its own workers."""
    from transformers import AutoTokenizer

    first, second = Path(loaded), Path(model_path)
    if not ((first / "config.json").is_file() and (second / "config.json").is_file()):
        return False

    def architecture(path: Path) -> dict[str, Any]:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        return {key: value for key, value in config.items() if key not in _NAMING_KEYS}

    def tokenizer_facts(path: Path) -> tuple[Any, ...]:
        loaded_tokenizer = AutoTokenizer.from_pretrained(path)
        return (type(loaded_tokenizer).__name__, loaded_tokenizer.get_vocab(), loaded_tokenizer.all_special_tokens,
                loaded_tokenizer.chat_template)

    return architecture(first) == architecture(second) and (
        tokenizer is not None or tokenizer_facts(first) == tokenizer_facts(second))


class EvalActorCache:
    """At most one `EvalActors`, handed from model to model and from `evaluate` call to call; `close()` (or
    leaving a `with` block) stops it. `evaluate` without a cache uses one of its own for its models.

    `budget`: the generation budget (tokens, `generation_budget`) the actors it starts hold room for at least, so
    that a later evaluation with a larger one (a forced answer after a short budget) fits them too."""

    def __init__(self, budget: int = 0) -> None:
        self.budget = budget
        self.current: EvalActors | None = None
        self.started = 0  # actor sets started: what sharing saves is visible in the log and the tests

    def fits(self, config: EvalConfig, model_path: str, device: str) -> bool:
        current = self.current
        return (current is not None and current.settings == actor_settings(config, device)
                and generation_budget(config) <= current.budget
                and (current.model_path == model_path
                     or reusable_for(current.model_path, model_path, config.model.tokenizer)))

    def actors_for(self, config: EvalConfig, model_path: str, device: str,
                   start: Callable[[int], EvalActors]) -> EvalActors:
        """The kept actors with `model_path`'s weights loaded, or new ones when they do not fit: `start(budget)`,
        with room for this evaluation's budget and the cache's."""
        if self.fits(config, model_path, device):
            assert self.current is not None
            if self.current.model_path != model_path:
                self.current.actors.generators.load_model(model_path)
                self.current.model_path = model_path
            return self.current
        self.close()
        self.current = start(max(generation_budget(config), self.budget))
        self.started += 1
        return self.current

    def close(self) -> None:
        from ray_effreason.actors.launch import stop_actors

        if self.current is not None:
            stop_actors(self.current.actors)
            self.current = None

    def __enter__(self) -> EvalActorCache:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
