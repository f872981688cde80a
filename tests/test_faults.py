"""Faults a run survives, on real Ray actors (a tiny Qwen2 built locally, the synthetic task, CPU, gloo).

Each kills a real actor (by name with `ray.kill(..., no_restart=False)`, or its process by PID) and checks
that the run finishes, that metrics.jsonl has every step once and, where the samples must be the unfaulted
ones (per-sample seeds), that the final weights equal an unfaulted run's bit for bit.
"""

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import ray
from safetensors.torch import load_file

from ray_effreason.actors.generator_group import wait_until_alive
from ray_effreason.actors.verifier import VerifierPool
from ray_effreason.driver import train
from ray_effreason.run_checkpoints import latest_checkpoint
from ray_effreason.tasks.synthetic import SyntheticArithmetic

pytestmark = pytest.mark.ray  # starts a Ray cluster

STEPS = 3
TINY = {"max_prompts": 16, "prompts_per_step": 4, "samples_per_prompt": 4, "max_new_tokens": 24,
        "train_batch_size": 8, "micro_batch_size": 4, "lr": 1e-3, "num_generators": 2, "num_verifiers": 2,
        "num_cpus_per_actor": 0.5, "save_every": 1, "steps": STEPS, "seed": 5,
        # An untrained model is never correct: with 0/1 rewards every advantage is 0 and the weights never move,
        # which would make "equal weights" vacuous. DAPO's length ramp over the whole budget rewards the few
        # samples that end early; after the first update the KL term moves the policy on every step.
        "reward": "dapo_overlong", "overlong_buffer_ratio": 1.0,
        # A token budget read from a 4-prompt probe (alpha_controller.py): the controller's state (alpha, its EMAs)
        # and the probe's samples must come through every fault as in the unfaulted run. This reward does not read
        # alpha, so the weights' equality is about the samples and the resume, the metrics' about the controller.
        "target_tokens": 10, "controller_probe_prompts": 4}
CONTROLLED = ("reward", "accuracy", "mean_tokens", "kl_to_ref", "controller/alpha", "controller/ema_tokens",
              "probe/mean_tokens", "probe/accuracy")




@pytest.fixture(scope="module")
def tiny_config(cpu_train_config, tiny_model):
    """`tiny_config(output_dir, run_name, **overrides)`: this module's run (TINY) of the tiny model."""
    return lambda output_dir, name, **overrides: cpu_train_config(tiny_model, output_dir, **TINY, run_name=name,
                                                                  **overrides)


def metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def final_weights(output_dir: Path) -> dict:
    return load_file(Path((output_dir / "final_checkpoint").read_text().strip()) / "model.safetensors")


def assert_same_weights(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].equal(right[name]), name


def kill_after_step(output_dir: Path, step: int, actor: str) -> threading.Thread:
    """Kill the named actor (Ray may restart it) as soon as metrics.jsonl has `step`: the next step is starting."""
    def watch() -> None:
        path = output_dir / "metrics.jsonl"
        while True:
            try:
                if any(json.loads(line)["step"] >= step for line in path.read_text().splitlines()):
                    break
            except (OSError, ValueError):  # not there yet, or a line half written
                pass
            time.sleep(0.01)
        ray.kill(ray.get_actor(actor), no_restart=False)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def unfaulted(ray_local, tiny_config, tiny_model, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("unfaulted")
    train(tiny_config(output, "unfaulted"))
    initial = load_file(Path(tiny_model) / "model.safetensors")
    assert any(not tensor.equal(initial[name]) for name, tensor in final_weights(output).items()), "no update"
    assert all(row["kl_to_ref"] != 0.0 for row in metrics(output)[1:])
    alphas = [row["controller/alpha"] for row in metrics(output)]  # over the 10-token budget: > 0 at once, then moving
    assert alphas[0] > 0 and len(set(alphas)) == STEPS
    assert all(row["probe/mean_tokens"] > 0 for row in metrics(output))
    return output


def test_a_generation_worker_killed_mid_run_is_restarted_and_the_weights_equal_an_unfaulted_run(
        unfaulted, tiny_config, tmp_path, capsys):
    killer = kill_after_step(tmp_path, 1, "gen-fault-generator-0")
    train(tiny_config(tmp_path, "gen-fault"))
    killer.join(timeout=1)
    assert not killer.is_alive()
    out = capsys.readouterr().out
    assert "requests re-issued" in out and "restart 1 of" not in out  # restarted in place, not the whole run
    assert [row["step"] for row in metrics(tmp_path)] == list(range(1, STEPS + 1))
    for faulted, clean in zip(metrics(tmp_path), metrics(unfaulted)):  # the same samples, graded the same
        for key in CONTROLLED:
            assert faulted[key] == clean[key], (faulted["step"], key)
    assert_same_weights(final_weights(tmp_path), final_weights(unfaulted))


@pytest.mark.slow
def test_a_learner_killed_mid_run_restarts_the_run_from_its_last_checkpoint(unfaulted, tiny_config, tmp_path,
                                                                              capsys):
    killer = kill_after_step(tmp_path, 2, "learner-fault-learner-0")
    train(tiny_config(tmp_path, "learner-fault", max_restarts=1))
    killer.join(timeout=1)
    out = capsys.readouterr().out
    assert "lost an actor" in out and "restart 1 of --max-restarts 1" in out and "resumed from" in out
    assert [row["step"] for row in metrics(tmp_path)] == list(range(1, STEPS + 1))  # every step once
    # The same data order and, from the checkpoint, the same policy, optimizer state and KL reference.
    for faulted, clean in zip(metrics(tmp_path), metrics(unfaulted)):
        for key in CONTROLLED:
            assert faulted[key] == clean[key], (faulted["step"], key)
    assert_same_weights(final_weights(tmp_path), final_weights(unfaulted))


@pytest.fixture(scope="module")
def killed_mid_checkpoint(unfaulted, tiny_config, tmp_path_factory) -> Path:
    """The unfaulted run as a kill during step 3's checkpoint leaves it: step-3.tmp half written (no rename
    yet), metrics.jsonl with a torn last line; then `--resume` of the same command."""
    output = tmp_path_factory.mktemp("killed")
    shutil.copytree(unfaulted, output, dirs_exist_ok=True)
    checkpoints = output / "checkpoints"
    (checkpoints / "step-3").rename(checkpoints / "step-3.tmp")
    weights = checkpoints / "step-3.tmp" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (output / "final_checkpoint").unlink()
    with (output / "metrics.jsonl").open("a") as handle:
        handle.write('{"run": "killed", "step": 4, "rew')
    assert latest_checkpoint(output).name == "step-2"
    train(tiny_config(output, "killed", resume=True))
    return output


def test_a_run_killed_mid_checkpoint_resumes_from_the_previous_one_and_keeps_every_record(
        killed_mid_checkpoint, unfaulted):
    assert [row["step"] for row in metrics(killed_mid_checkpoint)] == list(range(1, STEPS + 1))
    assert metrics(killed_mid_checkpoint)[:2] == metrics(unfaulted)[:2]  # the records written before the kill
    for key in CONTROLLED:  # step 3 from the step-2 checkpoint: the controller's state came back exactly
        assert metrics(killed_mid_checkpoint)[2][key] == metrics(unfaulted)[2][key], key
    assert not (killed_mid_checkpoint / "checkpoints" / "step-3.tmp").exists()
    assert_same_weights(final_weights(killed_mid_checkpoint), final_weights(unfaulted))


def test_after_a_resume_the_kl_reference_is_the_initial_policy(killed_mid_checkpoint, unfaulted):
    # Issue 13, fix 1. Step 3's kl_to_ref compares the step-2 policy with the reference before the update:
    # with the checkpoint as reference it would be exactly 0; with the initial policy, the unfaulted run's.
    resumed, clean = metrics(killed_mid_checkpoint)[2], metrics(unfaulted)[2]
    assert clean["kl_to_ref"] != 0.0
    assert resumed["kl_to_ref"] == clean["kl_to_ref"]


# ---------------------------------------------------------------- verifiers


def answers(count: int):
    """Synthetic problems with their own gold answers (correct) and a wrong one every third (not correct)."""
    task = SyntheticArithmetic(split="train", num_examples=count, seed=1)
    texts = [f"so \\boxed{{{example.gold}{'1' if index % 3 == 0 else ''}}}" for index, example in
             enumerate(task.examples)]
    return task, texts, list(task.examples), ["stop"] * count


def pid_of(worker) -> int:
    return ray.get(worker.__ray_call__.remote(lambda _actor: os.getpid()))


def test_a_hung_verifier_is_killed_and_its_answers_regraded_elsewhere(ray_local):
    task, texts, examples, reasons = answers(12)
    pool = VerifierPool(task, 2, num_cpus=0.25, max_restarts=1, deadline_s=3.0)
    expected = [index % 3 != 0 for index in range(12)]
    hung = pid_of(pool.workers[0])
    os.kill(hung, signal.SIGSTOP)
    start = time.monotonic()
    grades = pool.grade(texts, examples, reasons)
    assert time.monotonic() - start < 30  # the deadline (3 s) and a re-grade, not a stall
    assert [grade.correct for grade in grades] == expected
    assert pool.regraded_items == 6
    wait_until_alive(pool.workers[0])
    assert pid_of(pool.workers[0]) != hung  # killed and restarted by Ray
    assert [grade.correct for grade in pool.grade(texts, examples, reasons)] == expected
    for worker in pool.workers:
        ray.kill(worker)


def test_a_verifier_that_dies_mid_batch_has_its_answers_regraded(ray_local):
    task, texts, examples, reasons = answers(12)
    pool = VerifierPool(task, 2, num_cpus=0.25, max_restarts=1)
    victim = pid_of(pool.workers[1])
    os.kill(victim, signal.SIGSTOP)  # frozen with the call delivered, then killed: the call is lost
    threading.Timer(1.0, os.kill, (victim, signal.SIGKILL)).start()
    grades = pool.grade(texts, examples, reasons)
    assert [grade.correct for grade in grades] == [index % 3 != 0 for index in range(12)]
    assert pool.regraded_items == 6
    for worker in pool.workers:
        ray.kill(worker)


def test_answers_whose_verifiers_only_hang_count_as_not_correct(ray_local):
    task, texts, examples, reasons = answers(4)
    pool = VerifierPool(task, 1, num_cpus=0.25, max_restarts=2, deadline_s=2.0, attempts=1)
    os.kill(pid_of(pool.workers[0]), signal.SIGSTOP)
    grades = pool.grade(texts, examples, reasons)
    assert [(grade.correct, grade.answer_correct) for grade in grades] == [(False, None)] * 4
    ray.kill(pool.workers[0])
