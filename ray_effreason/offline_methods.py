"""The baselines trained on the base model's own samples (issue 12): rejection-sampling SFT and DPO.

Both follow one pipeline on the same actors as the RL loop (generation workers, verifier pool, DeepSpeed
learner group), one Ray job per model (`jobs/train_offline.py`, submitted by compare.run_comparison):

    0. start    the task's training prompts: those the RL members see in their steps (driver.prompt_indices,
                each prompt once), checked for length as the RL loop checks them; actors in one placement group
    1. sample   G samples per prompt from the base (--samples-per-prompt), each with its own seed
                (seeding.sample_seed(seed, "offline", problem_id, g): the same samples for both methods)
    2. grade    the verifier pool, training's verdict: a truncated sample (no EOS) is never correct
    3. select   sft_shortest: the shortest correct completion of each prompt (`shortest_correct`);
                dpo: (chosen, rejected) pairs (`preference_pairs`)
    4. train    --epochs passes on the learner group (LearnerWorker.train_objective "sft" | "dpo")
    5. save     the learners' HF checkpoint in DIR/model (+ DeepSpeed state), DIR/final_checkpoint naming it
                (what compare.py evaluates), DIR/metrics.json

The paper gives neither baseline's settings (PAPER.md §5: "sample count, epochs and LR are not retrievable";
the DPO construction is [UNVERIFIED]). Choices made here, each also written where it happens:
- the prompts are the RL members' prompts, so every method of the comparison sees the same training prompts;
- a pass that does not fill its last optimizer step repeats kept items (cyclically, in the shuffled order)
  up to a whole train_batch_size, so no kept completion is dropped and a small set still trains;
- no completion kept (no prompt with a correct sample): no update; the saved model is the base, said so
  in metrics.json and the job log;
- DPO when the correct samples of a prompt all have one length: a length preference between them is empty,
  so the shortest correct is paired with the longest wrong one, as when only one is correct.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ray_effreason.config import TrainConfig
from ray_effreason.config_tree import check_positive, nested, option, to_dict

# ---------------------------------------------------------------- 3. select (pure, on (B, G) arrays)


def _checked(correct: Any, num_tokens: Any) -> tuple[np.ndarray, np.ndarray]:
    from ray_effreason.rewards import _validated  # the rewards' own checks: shapes, bools, finite lengths

    return _validated(correct, num_tokens)


def shortest_correct(correct: Any, num_tokens: Any) -> np.ndarray:
    """(B,) the sample index of each prompt's shortest correct completion; -1 where none is correct.
    Equal lengths: the lowest sample index.

    >>> shortest_correct([[True, True, False], [False, False, False], [True, True, True]],
    ...                  [[9, 5, 1], [1, 2, 3], [4, 4, 6]]).tolist()
    [1, -1, 0]
    """
    correct, num_tokens = _checked(correct, num_tokens)  # (B, G), (B, G)
    lengths = np.where(correct, num_tokens, np.inf)  # (B, G): wrong samples never the shortest
    return np.where(correct.any(axis=1), lengths.argmin(axis=1), -1)


def preference_pairs(correct: Any, num_tokens: Any) -> np.ndarray:
    """(B, 2) the (chosen, rejected) sample indices of each prompt's DPO pair; (-1, -1) where it has none.

        correct samples of different lengths      the shortest correct over the longest correct
        one correct (or all correct of one length) the shortest correct over the longest wrong one
        and a wrong one
        no correct sample, or all correct of one   no pair
        length and none wrong

    The second row is our reading of "a wrong one when only one is correct" (PAPER.md §5, [UNVERIFIED]): the
    longest wrong one keeps the pair a length preference; correct samples that all have one length carry no
    length preference between them, so they are treated as "only one correct". Equal lengths: the lowest
    sample index, for the shortest and for the longest.

    >>> preference_pairs([[True, True, False], [True, False, False], [False, False, False], [True, True, False]],
    ...                  [[9, 5, 1], [4, 7, 8], [1, 2, 3], [4, 4, 2]]).tolist()
    [[1, 0], [0, 2], [-1, -1], [0, 2]]
    """
    correct, num_tokens = _checked(correct, num_tokens)  # (B, G), (B, G)
    rows = np.arange(correct.shape[0])
    shortest = shortest_correct(correct, num_tokens)  # (B,)
    longest_correct = np.where(correct, num_tokens, -1).argmax(axis=1)  # (B,), first of the longest
    longest_wrong = np.where(~correct, num_tokens, -1).argmax(axis=1)  # (B,)
    has_correct, has_wrong = correct.any(axis=1), (~correct).any(axis=1)
    distinct = has_correct & (num_tokens[rows, longest_correct] > num_tokens[rows, shortest])
    rejected = np.where(distinct, longest_correct, np.where(has_correct & has_wrong, longest_wrong, -1))
    chosen = np.where(rejected >= 0, shortest, -1)
    return np.stack([chosen, rejected], axis=1)


def epoch_order(num_items: int, batch_size: int, seed: tuple[int, ...]) -> np.ndarray:
    """One pass: a seeded permutation of the items, repeated cyclically up to a multiple of `batch_size`.

    A DeepSpeed step needs exactly train_batch_size items; padding with repeats instead of dropping the tail
    keeps every kept completion in every pass (a departure of ours; the paper gives no settings).

    >>> order = epoch_order(5, 4, (0,))
    >>> len(order), sorted(set(order.tolist())), order[5:].tolist() == order[:3].tolist()
    (8, [0, 1, 2, 3, 4], True)
    """
    order = np.random.default_rng(list(seed)).permutation(num_items)  # (n,)
    return np.resize(order, -(-num_items // batch_size) * batch_size)  # cyclic: the first items again


# ---------------------------------------------------------------- 0-2, 4-5: the shared pipeline


@dataclass
class Graded:
    """The base's graded samples of B prompts: completions in request order (p * G + g)."""

    examples: list[Any]
    completions: list[Any]
    correct: np.ndarray  # (B, G) training's verdict: right answer AND EOS
    num_tokens: np.ndarray  # (B, G)

    def sample(self, prompt: int, index: int) -> Any:
        from ray_effreason.batching import Sample

        G = self.correct.shape[1]
        completion = self.completions[prompt * G + index]
        return Sample(prompt_token_ids=completion.prompt_token_ids, token_ids=completion.token_ids, advantage=0.0)


def training_prompts(config: TrainConfig) -> tuple[Any, list[Any]]:
    """Step 0: (the task, the prompts the RL members see: driver.prompt_indices over their steps, each once)."""
    from ray_effreason.driver import fitting_prompts, prompt_indices
    from ray_effreason.tasks import load_task

    task = load_task(config.task, path=config.task_path, split="train")
    examples, _ = fitting_prompts(task.examples[: config.max_prompts], config.model.tokenizer or config.model.model,
                                  config)
    B = config.rollout.prompts_per_step
    indices = [index for step in range(config.num_steps) for index in prompt_indices(len(examples), B, step,
                                                                                     config.seed)]
    return task, [examples[index] for index in dict.fromkeys(indices)]


def sample_and_grade(actors: Any, examples: list[Any], config: TrainConfig) -> Graded:
    """Steps 1-2: G seeded samples per prompt from the base, graded with training's verdict."""
    from ray_effreason.actors.generator import SampleRequest
    from ray_effreason.seeding import sample_seed

    B, G = len(examples), config.rollout.samples_per_prompt
    requests = [SampleRequest(p * G + g, p, g, examples[p].prompt,
                              sample_seed(config.seed, "offline", examples[p].id, g))
                for p in range(B) for g in range(G)]
    completions = sorted(actors.generators.generate(requests, config.rollout.sampling()), key=lambda c: c.request_id)
    grades = actors.verifiers.grade([c.text for c in completions], [examples[c.prompt_index] for c in completions],
                                    [c.finish_reason for c in completions])
    correct = np.array([grade.correct for grade in grades]).reshape(B, G)  # (B, G)
    num_tokens = np.array([c.num_tokens for c in completions]).reshape(B, G)  # (B, G)
    return Graded(examples, completions, correct, num_tokens)


def fit(actors: Any, objective: str, items: list[Any], config: OfflineTrainConfig) -> list[dict[str, float]]:
    """Step 4: --epochs passes, each a seeded shuffle padded to whole optimizer steps (`epoch_order`)."""
    size = config.train.learner.train_batch_size
    history = []
    for epoch in range(config.offline.epochs if items else 0):
        order = epoch_order(len(items), size, (config.train.seed, epoch))
        metrics = actors.learners.train_objective(objective, [items[index] for index in order],
                                                  optimizer_steps=len(order) // size, beta=config.offline.dpo_beta)
        history.append({"epoch": epoch + 1, "items": len(order), **metrics})
        print(f"[{config.train.name}] {objective} epoch {epoch + 1}: {json.dumps(metrics)}", flush=True)
    return history


def save_model(actors: Any, config: OfflineTrainConfig, metrics: dict[str, Any]) -> Path:
    """Step 5: DIR/model (HF weights and tokenizer, as run_checkpoints.save_checkpoint writes them), written into
    model.tmp then renamed; DIR/final_checkpoint (the member is done: compare.py skips it on rerun)."""
    output_dir = Path(config.train.output_dir).resolve()
    final, staging = output_dir / "model", output_dir / "model.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    actors.learners.save_checkpoint(str(staging), config.train.model.tokenizer or config.train.model.model)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False))
    (output_dir / "final_checkpoint").write_text(str(final))
    return final


@contextlib.contextmanager
def offline_actors(config: OfflineTrainConfig, task: Any):
    """Generation workers on the base, the verifier pool, the learner group (its reference, for DPO, is the base)."""
    import ray

    from ray_effreason.actors.launch import cluster_device, start_actors, stop_actors
    from ray_effreason.driver import check_model_path
    train = config.train
    check_model_path(train.model.model, "--model")
    if not ray.is_initialized():
        ray.init()
    # kl_coef 0: the SFT update has no KL term, so the learner loads no reference; DPO loads its own on first use.
    actors = start_actors(name=train.name, task=task, model_path=train.model.model,
                          tokenizer_path=train.model.tokenizer or train.model.model,
                          device=cluster_device(train.model.device), rollout=train.rollout, reward=train.reward,
                          seed=train.seed, learner=train.learner, loss=replace(train.loss, kl_coef=0.0))
    try:
        yield actors
    finally:
        stop_actors(actors)


def _summary(config: OfflineTrainConfig, graded: Graded, kept: int) -> dict[str, Any]:
    correct, num_tokens = graded.correct, graded.num_tokens
    return {"method": config.method, "prompts": int(correct.shape[0]), "samples_per_prompt": int(correct.shape[1]),
            "base_accuracy": float(correct.mean()), "base_mean_tokens": float(num_tokens.mean()),
            "prompts_with_a_correct_sample": int(correct.any(axis=1).sum()), "kept": kept,
            "config": to_dict(config)}


# ---------------------------------------------------------------- the methods


def train_sft_shortest(config: OfflineTrainConfig) -> Path:
    """Rejection-sampling SFT on the shortest correct completion (PAPER.md §5):

    0. prompts and actors  1. G samples per prompt from the base  2. grade  3. keep each prompt's shortest
    correct completion (`shortest_correct`; a prompt with none contributes nothing)  4. --epochs of NLL on
    the kept completions' tokens (preference_losses.sft_loss, token-mean over each optimizer step)  5. save.
    """
    task, examples = training_prompts(config.train)
    with offline_actors(config, task) as actors:
        graded = sample_and_grade(actors, examples, config.train)
        picks = shortest_correct(graded.correct, graded.num_tokens)  # (B,)
        items = [graded.sample(prompt, int(index)) for prompt, index in enumerate(picks) if index >= 0]
        metrics = _summary(config, graded, len(items))
        kept_tokens = [int(graded.num_tokens[prompt, index]) for prompt, index in enumerate(picks) if index >= 0]
        metrics["kept_mean_tokens"] = float(np.mean(kept_tokens)) if kept_tokens else None
        _say_if_nothing(config, items)
        metrics["epochs"] = fit(actors, "sft", items, config)
        return save_model(actors, config, metrics)


def train_dpo(config: OfflineTrainConfig) -> Path:
    """DPO, shortest correct over longest correct (or a wrong one), against the frozen base (PAPER.md §5):

    0. prompts and actors  1. G samples per prompt from the base  2. grade  3. one pair per prompt
    (`preference_pairs`: none when no sample is correct)  4. --epochs of DPO with --dpo-beta
    (preference_losses.dpo_loss, Rafailov et al. 2023 Eq. 7, reference = the base)  5. save.
    """
    task, examples = training_prompts(config.train)
    with offline_actors(config, task) as actors:
        graded = sample_and_grade(actors, examples, config.train)
        pairs = preference_pairs(graded.correct, graded.num_tokens)  # (B, 2)
        items = [(graded.sample(prompt, int(chosen)), graded.sample(prompt, int(rejected)))
                 for prompt, (chosen, rejected) in enumerate(pairs) if chosen >= 0]
        metrics = _summary(config, graded, len(items))
        metrics["pairs_with_a_wrong_rejected"] = int(sum(not graded.correct[prompt, rejected]
                                                         for prompt, (_, rejected) in enumerate(pairs)
                                                         if rejected >= 0))
        metrics["dpo_beta"] = config.offline.dpo_beta
        _say_if_nothing(config, items)
        metrics["epochs"] = fit(actors, "dpo", items, config)
        return save_model(actors, config, metrics)


def _say_if_nothing(config: OfflineTrainConfig, items: list[Any]) -> None:
    if not items:  # no correct sample anywhere: nothing to learn from; the saved model is the base
        print(f"[{config.train.name}] no prompt has a correct sample: no update, the saved model is the base",
              flush=True)


OFFLINE_METHODS: dict[str, Callable[[OfflineTrainConfig], Path]] = {
    "sft_shortest": train_sft_shortest,
    "dpo": train_dpo,
}


# ---------------------------------------------------------------- the job's config


@dataclass(frozen=True)
class OfflineConfig:
    """The knobs of the baselines trained on the base model's own samples (issue 12): G samples
    (--samples-per-prompt) of each training prompt, graded, then SFT on the shortest correct or DPO pairs."""

    epochs: int = option(1, "sft_shortest / dpo: passes over the kept completions or the pairs")
    dpo_beta: float = option(0.1, "dpo: beta of the DPO loss, against the frozen base (Rafailov et al. 2023: 0.1)")

    def __post_init__(self) -> None:
        check_positive(self, "epochs", "dpo_beta")


@dataclass(frozen=True)
class OfflineTrainConfig:
    """One offline model: `method` on `train`'s model, task, sampling and learner, with `offline`'s knobs."""

    method: str = option("sft_shortest", " | ".join(OFFLINE_METHODS) + ": what is trained on the base's graded samples")
    offline: OfflineConfig = nested(OfflineConfig)
    # The RL loop's own knobs (checkpoint cadence, rollout logging, resume, supervisor) do not apply.
    train: TrainConfig = nested(TrainConfig, hide=("save_every", "keep_checkpoints", "rollouts_logged", "resume",
                                                   "max_restarts"))

    def __post_init__(self) -> None:
        if self.method not in OFFLINE_METHODS:
            raise ValueError(f"unknown offline method {self.method!r}; choose from {', '.join(OFFLINE_METHODS)}")



def train_offline(config: OfflineTrainConfig) -> Path:
    """The job's entry: `config.method`'s pipeline; returns the saved model's directory (HF format)."""
    return OFFLINE_METHODS[config.method](config)
