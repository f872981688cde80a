"""The RL loop for one alpha: length-penalized RL (Arora & Zanette 2025) on Ray actors.

    0. start       Ray, the output dir, the task, actors in one placement group, the weight-sync group;
                   with --resume: the last checkpoint (weights, optimizer, step, data order)
    per rollout step:
    1. prompts     B prompts in a seeded per-epoch order (the same order after a resume)
    2. generate    B*G sample requests, each with its own seed, spread over the generation workers; with
                   --async-steps 1 the next step's requests go out now and are sampled during 3-6
                   (+ with --controller-probe-prompts N: N held-out prompts once each at the evaluation
                   temperature, what the controller reads)
    3. grade       the verifier pool, each worker's completions as they stream back (grading while
                   generating; --no-grade-while-generating: after the batch); truncated samples (no EOS)
                   are not correct; with an accuracy floor, a probe more than --floor-tolerance under it
                   sends the learners back to the last weights that held it and drops the batch (floor_guard.py)
    4. reward      length_penalized_rewards on (B, G): mean/std over each prompt's correct samples; with a
                   token budget or an accuracy floor, alpha is the controller's (alpha_controller.py);
                   --reward NAME picks another length reward (rewards.REWARDS, length_rewards.py)
    5. advantages  RLOO on (B, G) (no per-group std scaling: it would cancel alpha)
    6. update      the learner group: old/ref log-probs, token-level PPO-clip, k1 KL in the reward,
                   optimizer_steps = B*G / train_batch_size steps (the paper: 2)
    7. sync        learner rank 0 broadcasts the new weights to every generation worker (one step off: once
                   the next step's samples are in, so they come from one policy, one update behind)
    8. log         metrics.jsonl, the job log, Ray dashboard metrics, a sample of rollouts to parquet;
                   the controller updates alpha for the next step
    9. checkpoint  every save_every steps: HF weights + DeepSpeed state + driver state (step, config,
                   controller), atomically (run_checkpoints.py)

Departures from the paper, each also noted where it happens: the prompt is never truncated (an error
instead, generator.tokenize_prompts); log-probs use logits / temperature (learner.py); advantage
whitening is off by default (learner.py, PAPER.md §1.4); truncated samples can never crash the reward
(rewards.py, PAPER.md §1.3).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import ray

from ray_effreason.actors.generator import SampleRequest
from ray_effreason.actors.generator_group import PendingGeneration
from ray_effreason.actors.launch import (
    cluster_device,
    init_weight_sync,
    rejoin_weight_sync,
    start_actors,
    stop_actors,
    sync_weights,
)
from ray_effreason.actors.verifier import GradingStream
from ray_effreason.advantages import compute_advantages
from ray_effreason.alpha_controller import AlphaController
from ray_effreason.batching import Sample
from ray_effreason.config import TrainConfig
from ray_effreason.config_tree import from_dict, to_dict
from ray_effreason.evaluation import sample_metrics
from ray_effreason.floor_guard import FloorGuard
from ray_effreason.probe import held_out_probe, probe_metrics, probe_requests
from ray_effreason.rewards import prompt_budgets, shaped_rewards
from ray_effreason.run_checkpoints import check_checkpoint, latest_checkpoint, save_checkpoint
from ray_effreason.run_log import RunLog
from ray_effreason.seeding import sample_seed
from ray_effreason.tasks import load_task


def prompt_indices(num_prompts: int, batch: int, step: int, seed: int) -> list[int]:
    """Prompts of rollout step `step`: a fresh seeded permutation every epoch; a pure function of step."""
    steps_per_epoch = num_prompts // batch
    if steps_per_epoch == 0:
        raise ValueError(f"the task has {num_prompts} prompts, fewer than prompts_per_step={batch}")
    epoch, offset = divmod(step, steps_per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_prompts)
    return order[offset * batch:(offset + 1) * batch].tolist()


def fitting_prompts(examples: list[Any], tokenizer_path: str, config: TrainConfig) -> tuple[list[Any], int]:
    """Every training prompt tokenized before step 0 (as the workers will: template, special tokens).

    A prompt over --max-prompt-tokens is an error naming the rows, here, before any actor starts (not
    when it is first sampled, again at the same step on every resume), or, with --drop-long-prompts,
    dropped and counted. Returns (the prompts kept, the number dropped).
    """
    from transformers import AutoTokenizer

    from ray_effreason.tasks.base import prompt_token_ids

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    limit, template = config.rollout.max_prompt_tokens, config.rollout.prompt_template
    lengths = [len(prompt_token_ids(example.prompt, tokenizer, template)) for example in examples]
    long = [(example.id, length) for example, length in zip(examples, lengths) if length > limit]
    if long and not config.drop_long_prompts:
        shown = ", ".join(f"{identifier} ({length} tokens)" for identifier, length in long[:5])
        raise ValueError(f"{len(long)} of {len(examples)} training prompts of {config.task} exceed --max-prompt-tokens "
                         f"{limit}: {shown}{', ...' if len(long) > 5 else ''}; raise the limit or pass "
                         f"--drop-long-prompts to drop and count them")
    return [example for example, length in zip(examples, lengths) if length <= limit], len(long)


def ready_clock(actors: list[Any], started: float) -> Callable[[], float]:
    """Seconds from `started` until every actor in `actors` had finished its __init__, stamped as each one does
    (a Ray callback, not a wait); the returned function blocks until all have."""
    import threading

    stamps: list[float] = []
    done = threading.Event()

    def stamp(_future: Any) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) == len(actors):
            done.set()

    for actor in actors:
        actor.__ray_ready__.remote().future().add_done_callback(stamp)

    def seconds() -> float:
        done.wait()
        return max(stamps) - started

    return seconds


def check_model_path(model: str, flag: str) -> None:
    """A local path (absolute, ./, ../, ~) that does not exist: an error naming the flag, not a hub lookup."""
    if model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().exists():
        raise FileNotFoundError(f"{flag} {model}: no such file or directory")


def train(config: TrainConfig) -> Path:
    """Run the loop; returns the final checkpoint directory (Hugging Face format).

    A supervisor around it: when an actor the run cannot restart in place is lost (a learner rank; a generation
    worker or verifier out of Ray restarts, launch.ACTOR_RESTARTS) the run's actors are torn down and the run
    resumes from its last complete checkpoint, with the same data order, at most --max-restarts times.
    """
    for attempt in range(config.max_restarts + 1):
        try:
            with contextlib.ExitStack() as cleanup:  # the attempt's actors and logs, closed even on a fault
                return _train_once(config if attempt == 0 else replace(config, resume=True), cleanup)
        except Exception as error:  # noqa: BLE001 (re-raised unless a lost actor, within --max-restarts)
            if attempt == config.max_restarts or not lost_actor(error):
                raise
            print(f"[{config.name}] lost an actor ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                  f"restart {attempt + 1} of --max-restarts {config.max_restarts} from the last checkpoint",
                  flush=True)
    raise AssertionError("unreachable")


def lost_actor(error: BaseException) -> bool:
    """A fault the supervisor restarts the run for: an actor died, or a collective (DeepSpeed's, the weight
    sync's) failed because a member did. A task's own exception (a bug, a bad input) is raised at once."""
    import torch.distributed

    cause = getattr(error, "cause", None)
    return (isinstance(error, ray.exceptions.RayActorError)
            or isinstance(error, ray.exceptions.RayTaskError) and isinstance(cause, torch.distributed.DistError))


def _train_once(config: TrainConfig, cleanup: contextlib.ExitStack) -> Path:
    """One attempt of the loop; `cleanup` stops its actors and closes its logs when it ends, however it ends."""
    # ------------------------------------------------------------------ 0. start
    started = time.perf_counter()
    check_model_path(config.model.model, "--model")
    if config.model.tokenizer:
        check_model_path(config.model.tokenizer, "--tokenizer")
    output_dir = Path(config.output_dir)
    (output_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    start_step, model_path, resumed_from, controller_state = 0, config.model.model, None, None
    if config.resume:
        resumed_from = latest_checkpoint(output_dir)
        if resumed_from is not None:
            check_checkpoint(resumed_from)
            state = json.loads((resumed_from / "driver_state.json").read_text())
            saved = from_dict(TrainConfig, state["config"])
            if (saved.seed, saved.max_prompts, saved.rollout.prompts_per_step) != (
                    config.seed, config.max_prompts, config.rollout.prompts_per_step):
                raise ValueError(f"--resume with a different data order than {resumed_from}: seed, max_prompts "
                                 f"and prompts_per_step must match the original run")
            start_step, model_path = state["step"], str(resumed_from)
            controller_state = state.get("controller")
    (output_dir / "config.json").write_text(json.dumps(to_dict(config), indent=2))
    log = RunLog(output_dir, config.name, config.reward.alpha, truncate_after_step=start_step,
                 loggers=config.loggers, config=to_dict(config), total_steps=config.num_steps)
    cleanup.callback(log.close)

    task = load_task(config.task, path=config.task_path, split="train")
    tokenizer_path = config.model.tokenizer or config.model.model
    if not ray.is_initialized():  # only now: a bad flag, file, data row or checkpoint fails above in seconds
        ray.init()
    device = cluster_device(config.model.device)
    # Generators start from the checkpoint; learners from the initial policy, whose policy weights
    # load_checkpoint then replaces: the KL reference stays the initial policy after a resume.
    actors = start_actors(name=config.name, task=task, model_path=model_path, tokenizer_path=tokenizer_path,
                          device=device, rollout=config.rollout, reward=config.reward,
                          seed=config.seed, learner=config.learner, loss=config.loss,
                          learner_model_path=config.model.model, learners_later=True)
    cleanup.callback(stop_actors, actors)
    generators_ready = ready_clock(actors.generators.workers, started)
    # The prompt check (a tokenizer load: seconds of imports) runs while the generation workers import theirs;
    # a prompt over --max-prompt-tokens still fails here, before step 0, its actors stopped by `cleanup`.
    examples, dropped = fitting_prompts(task.examples[: config.max_prompts], tokenizer_path, config)
    examples, probe_examples = held_out_probe(examples, config)  # the controller's probe, never trained on
    # Only then the learners (DeepSpeed, the reference copy): on a small CPU node they would otherwise take the
    # cores the generation workers need first; they start while the first step is sampled.
    actors.start_learners()
    sampling = config.rollout.sampling(logprobs=config.async_steps > 0)  # one step off: the old policy's
    probe_sampling = replace(sampling, temperature=config.controller.controller_probe_temperature, logprobs=False)
    B, G = config.rollout.prompts_per_step, config.rollout.samples_per_prompt
    optimizer_steps = B * G // config.learner.train_batch_size
    controller = (AlphaController(config.controller, controller_state)
                  if config.controller.enabled else None)
    guard = (FloorGuard(actors, output_dir, config, tokenizer_path, controller, start_step)
             if FloorGuard.wanted(config) else None)
    specs: list[Any] = []  # the weight-sync tensors, once the group exists

    def rejoin() -> None:  # after a generator restart: a new sync group, then the current weights again
        rejoin_weight_sync(actors, config.rollout, specs)

    def launch(step: int) -> tuple[list[Any], Any, PendingGeneration]:
        """Steps 1 and 2 of `step`: its prompts, and its requests sent to the generation workers."""
        batch = [examples[index] for index in prompt_indices(len(examples), B, step, config.seed)]
        batch, budgets = prompt_budgets(config.reward, batch, (config.seed, step))  # l1_max: budget in the prompt
        requests = [SampleRequest(p * G + g, p, g, batch[p].prompt, sample_seed(config.seed, "train", step, p, g))
                    for p in range(B) for g in range(G)]
        # a worker that dies is restarted by Ray, re-joined (`rejoin`), and only its requests are re-issued
        return batch, budgets, actors.generators.submit(requests, sampling, rejoin=rejoin)

    # The first step's samples need only the generators: they are drawn while the learners start (DeepSpeed,
    # the reference model), and the sync group is joined once they are in (its rendezvous waits for every member).
    launched = time.perf_counter()
    upcoming = launch(start_step) if start_step < config.num_steps else None
    if upcoming is not None:
        upcoming[2].result()
    first_generate_s = time.perf_counter() - launched  # the first step's time/generate (its start-up overlaps)
    startup = {"startup/first_samples_s": time.perf_counter() - started,  # from train(): Ray, actors, 1st batch
               # ... until every generation worker has started (its model loaded): its first token comes next
               "startup/generators_ready_s": generators_ready()}
    if resumed_from is not None:
        actors.learners.load_checkpoint(str(resumed_from))
    specs.extend(init_weight_sync(actors, config.rollout))
    startup["startup/ready_s"] = time.perf_counter() - started  # learners and the weight-sync group up too
    log.info(f"run {config.name}: device={device}, {len(examples)} prompts"
             + (f" ({dropped} longer than --max-prompt-tokens dropped)" if dropped else "")
             + f", steps {start_step}->{config.num_steps}"
             + (f", resumed from {resumed_from}" if resumed_from else ""))

    checkpoint, pipeline_start = resumed_from, start_step
    for step in range(start_step, config.num_steps):
        clock = PhaseClock()
        lap, timings = clock.lap, clock.timings

        # ------------------------------------------------------------------ 1. prompts, 2. generate
        batch, budgets, generation = upcoming if upcoming is not None else launch(step)
        # weight updates between the sampling policy and this update: one step off, every step but the first
        staleness = int(config.async_steps > 0 and step > pipeline_start)
        # 3 starts here: each worker streams its completions back as they finish and, with
        # --grade-while-generating (the default), each piece goes to the verifiers at once (GradingStream)
        grading = GradingStream(actors.verifiers)
        grade = grading.completions_adder
        streamed = config.grade_while_generating
        completions = sorted(generation.result(on_chunk=grade("batch", batch) if streamed else None),
                             key=lambda c: c.request_id)
        lap("generate")  # with --async-steps 1: only what is left of it once the previous update is done
        if step == start_step:
            timings["time/generate"] = first_generate_s
        # One step off (verl's one_step_off_policy): the next step samples with these weights while this step
        # grades and updates; the PPO ratio's old policy is then the sampling one (batching.Sample.logprobs).
        # After a resume the first step samples with the checkpoint's weights (the pipeline restarts).
        # The controller's probe: each held-out prompt once at the evaluation temperature, with this step's weights
        # (its own seeds; before the next step's requests, so one batch is in flight at a time).
        probe = actors.generators.generate(
            probe_requests(probe_examples, config.seed, step), probe_sampling, rejoin=rejoin,
            on_chunk=grade("probe", probe_examples) if streamed else None) if probe_examples else []
        if probe:
            lap("probe")
        upcoming = launch(step + 1) if config.async_steps and step + 1 < config.num_steps else None
        # ------------------------------------------------------------------ 3. grade
        if not streamed:  # the whole batch (and the probe) in one go
            grade("batch", batch)(completions)
            grade("probe", probe_examples)(probe)
        graded = grading.result()  # time/grade: only what is left once the batch is in
        grades = [graded["batch", c.request_id] for c in completions]
        probe_grades = [graded["probe", c.request_id] for c in probe]
        probe_read = probe_metrics(probe, probe_grades, probe_examples) if probe else {}
        lap("grade")
        # The floor's guard (floor_guard.py): the probe read the weights this step updates; more than
        # --floor-tolerance under the floor, the learners go back to the last weights that held it, and this
        # batch (sampled by the weights that broke it) is dropped
        restored = guard.check(step, probe_read["probe/accuracy"]) if guard else None  # a guard has a probe
        # ------------------------------------------------------------------ 4. reward, 5. advantages
        correct = np.array([grade.correct for grade in grades]).reshape(B, G)  # (B, G)
        num_tokens = np.array([c.num_tokens for c in completions]).reshape(B, G)  # (B, G)
        alpha = controller.alpha if controller else config.reward.alpha  # a budget: alpha is a state of the run
        rewards = shaped_rewards(config.reward, correct, num_tokens, alpha=alpha,  # (B, G), --reward NAME
                                 max_new_tokens=config.rollout.max_new_tokens, budgets=budgets)
        advantages = compute_advantages(config.loss.advantage, rewards)  # (B, G)
        # ------------------------------------------------------------------ 6. update
        samples = [Sample(prompt_token_ids=c.prompt_token_ids, token_ids=c.token_ids,
                          advantage=float(advantages.flat[c.request_id]), logprobs=c.logprobs) for c in completions]
        order = np.random.default_rng([config.seed, step, 1]).permutation(len(samples))  # minibatch shuffle
        learner_metrics = ({"controller/restored_step": float(restored)} if restored is not None
                           else actors.learners.train([samples[index] for index in order], optimizer_steps))
        lap("update")
        # ------------------------------------------------------------------ 7. sync
        if upcoming is not None:  # the workers finish the next step's samples with the old weights first
            upcoming[2].result()
            lap("generate_next")
            if restored is not None:  # sampled by the weights that broke the floor: the pipeline starts again
                upcoming, pipeline_start = None, step + 1
        sync_weights(actors, specs)
        lap("sync")
        # ------------------------------------------------------------------ 8. log
        metrics = step_metrics(step + 1, alpha, correct, num_tokens, rewards, grades, batch)
        metrics.update(probe_read)
        if controller:  # the next step's alpha, from this step's batch or its probe (alpha_controller.py)
            source = "probe/" if probe else ""
            if restored is None:  # after a rollback, the restored state's alpha (capped) is the next step's
                controller.update(metrics[f"{source}mean_tokens"], metrics[f"{source}accuracy"])
            metrics.update(controller.metrics())
        metrics.update(learner_metrics)
        metrics.update(timings)
        metrics["staleness"] = float(staleness)
        metrics["grading/busy_s"] = grading.busy_s  # all grading, overlapped with generation or not
        metrics["grading/calls"] = float(len(grading.call_starts))
        if step == start_step:
            metrics.update(startup)
        metrics["tokens_per_second"] = float(num_tokens.sum()) / max(timings["time/generate"], 1e-9)
        metrics["step_tokens_per_second"] = float(num_tokens.sum()) / max(sum(timings.values()), 1e-9)
        log.step(metrics)
        log.rollouts(step + 1, completions[: config.rollouts_logged], grades, rewards, advantages, batch)
        # ------------------------------------------------------------------ 9. checkpoint
        last = step + 1 == config.num_steps
        if (step + 1) % config.save_every == 0 or last:
            checkpoint = save_checkpoint(actors, output_dir, step + 1, config, tokenizer_path,
                                         controller.state_dict() if controller else None)
            log.info(f"checkpoint {checkpoint}")
    if checkpoint is None:
        raise RuntimeError("no steps were run and no checkpoint exists")
    if guard:  # the final weights, which no step's probe has read
        grading = GradingStream(actors.verifiers)
        final_probe = actors.generators.generate(probe_requests(probe_examples, config.seed, config.num_steps),
                                                 probe_sampling, rejoin=rejoin,
                                                 on_chunk=grading.completions_adder("probe", probe_examples))
        graded = grading.result()
        accuracy = probe_metrics(final_probe, [graded["probe", c.request_id] for c in final_probe],
                                 probe_examples)["probe/accuracy"]
        checkpoint = guard.final(checkpoint, accuracy)
        log.info(f"final probe: accuracy {accuracy:.3f}, floor {controller.state.accuracy_floor}: final model "
                 f"{checkpoint}")
    (output_dir / "final_checkpoint").write_text(str(checkpoint.resolve()))
    faults = (f" ({actors.generators.reissued_requests} requests re-issued, {actors.verifiers.regraded_items} "
              f"answers re-graded after actor faults)")
    log.info(f"done: final model at {checkpoint}"
             + (faults if actors.generators.reissued_requests or actors.verifiers.regraded_items else ""))
    return checkpoint


class PhaseClock:
    """Seconds per phase of one rollout step, as `time/<phase>` metrics."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.timings[f"time/{phase}"] = now - self.last
        self.last = now


def step_metrics(step: int, alpha: float, correct: np.ndarray, num_tokens: np.ndarray, rewards: np.ndarray,
                 grades: list[Any], batch: list[Any]) -> dict[str, float]:
    """The step's numbers: accuracy and tokens by the same code as evaluation (evaluation.sample_metrics),
    with training's verdict (a truncated sample is not correct), plus what only training has."""
    B, G = correct.shape
    truncated = np.array([grade.truncated for grade in grades]).reshape(B, G)  # (B, G)
    shared = sample_metrics([
        {"problem_id": batch[p].id, "sample_index": g, "num_tokens": int(num_tokens[p, g]),
         "finish_reason": "length" if truncated[p, g] else "stop", "extracted_answer": None,
         "correct": bool(correct[p, g]), "level": batch[p].level, "min_tokens": batch[p].min_tokens}
        for p in range(B) for g in range(G)])
    metrics = {"step": step, "alpha": alpha, "reward": float(rewards.mean()), "max_tokens": float(num_tokens.max()),
               "all_correct_groups": float(correct.all(axis=1).mean()),
               "all_wrong_groups": float((~correct).all(axis=1).mean())}
    for name in ("accuracy", "mean_tokens", "mean_tokens_correct", "truncation_rate", "tokens_over_min_tokens"):
        if name in shared:  # tokens_over_min_tokens: only for tasks with min_tokens
            metrics[name] = float("nan") if shared[name] is None else float(shared[name])
    return metrics
