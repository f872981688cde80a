"""GeneratorGroup: the driver's handle over a run's generation workers (generator.py): one batch of requests
split evenly over the workers, in flight as a PendingGeneration, re-issued where a worker was lost.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from ray_effreason.actors.generator import Completion, SampleRequest, StaleWeightsError
from ray_effreason.config import SamplingConfig


# The faults after which a generation worker's share of a step is re-issued: the actor died (Ray restarts it,
# launch.ACTOR_RESTARTS) or it came back from a restart between steps, with the weights it started from.
def _lost_or_stale(error: Exception) -> bool:
    import ray

    return (isinstance(error, ray.exceptions.RayActorError)
            or isinstance(getattr(error, "cause", None), StaleWeightsError))


def wait_until_alive(worker: Any, timeout_s: float = 600.0) -> None:
    """Return once a restarting actor answers again; ActorDiedError when Ray will not restart it (out of
    max_restarts). While it restarts a call raises ActorUnavailableError instead of waiting: ask again."""
    import time

    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.get(worker.__ray_ready__.remote(), timeout=max(deadline - time.monotonic(), 0.1))
            return
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class GeneratorGroup:
    """Driver-side handle over N GenerationWorker actors: one batch of requests, split evenly, in order.

    `weights_version` counts the weight syncs sent (launch.sync_weights): a worker with another version has
    been restarted by Ray and is re-joined to the sync group before it samples again.
    """

    def __init__(self, workers: list[Any]):
        self.workers = workers
        self.weights_version = 0
        self.reissued_requests = 0  # requests generated again after a worker fault, for the run's log

    def generate(self, requests: list[SampleRequest], sampling: SamplingConfig,
                 rejoin: Callable[[], None] | None = None, attempts: int = 3,
                 on_chunk: Callable[[list[Completion]], None] | None = None) -> list[Completion]:
        """On a worker fault, `rejoin()` (re-create the sync group, re-send the current weights) and re-issue
        only that worker's requests, up to `attempts` times; without `rejoin` the fault is raised. Each sample
        has its own seed, so the re-issued requests give the samples the lost worker would have given.
        `on_chunk`: PendingGeneration.result's, each piece as it arrives."""
        return self.submit(requests, sampling, rejoin, attempts).result(on_chunk)

    def load_model(self, model_path: str) -> None:
        """Every worker loads another checkpoint of the same architecture (GenerationWorker.load_model)."""
        import ray

        ray.get([worker.load_model.remote(model_path) for worker in self.workers])

    def submit(self, requests: list[SampleRequest], sampling: SamplingConfig,
               rejoin: Callable[[], None] | None = None, attempts: int = 3) -> PendingGeneration:
        """`generate` without waiting: the requests go to the workers now, `.result()` collects them.
        Request ids must be unique in a batch: completions are matched to their requests by id."""
        repeated = sorted(rid for rid, count in Counter(r.request_id for r in requests).items() if count > 1)
        if repeated:
            raise ValueError(f"request ids repeat in one batch: {repeated[:5]}")
        size = -(-len(requests) // len(self.workers))
        chunks = {index: requests[start:start + size] for index, start in enumerate(range(0, len(requests), size))}
        version = self.weights_version if rejoin else None  # without a sync group (evaluation), any weights
        return PendingGeneration(self, chunks, sampling, version, rejoin, attempts)


class PendingGeneration:
    """One batch of requests in flight on a GeneratorGroup's workers; `result()` waits (once) and handles faults.

    Each worker streams its completions as they finish (GenerationWorker.generate_stream, a Ray streaming
    generator): `result(on_chunk)` hands every piece to `on_chunk` the moment it arrives, so the driver grades
    while the rest are sampled (driver step 3, verifier.GradingStream). A worker lost mid-stream has only the
    requests it had not yet returned re-issued; each sample has its own seed, so they are the ones it would
    have given.
    """

    def __init__(self, group: GeneratorGroup, chunks: dict[int, list[SampleRequest]], sampling: SamplingConfig,
                 version: int | None, rejoin: Callable[[], None] | None, attempts: int):
        self.group, self.chunks, self.sampling, self.version = group, chunks, sampling, version
        self.rejoin, self.attempts = rejoin, attempts
        self.streams = self._issue(chunks)
        self.completions: list[Completion] | None = None

    def _issue(self, chunks: dict[int, list[SampleRequest]]) -> dict[int, Any]:
        workers = self.group.workers
        return {index: workers[index].generate_stream.options(num_returns="streaming").remote(
                    chunk, self.sampling, self.version)
                for index, chunk in chunks.items()}

    def result(self, on_chunk: Callable[[list[Completion]], None] | None = None) -> list[Completion]:
        """Every completion, in request order. `on_chunk(completions)` is called in this thread once per piece,
        as it arrives (pieces of a re-issued part too): every completion once per call of `result`, all in one
        piece when an earlier call already collected them."""
        import ray

        if self.completions is not None:
            if on_chunk is not None:
                on_chunk(self.completions)
            return self.completions
        received: dict[int, list[Completion]] = {index: [] for index in self.chunks}
        pending, streams = self.chunks, self.streams
        for attempt in range(self.attempts + 1):
            failed: dict[int, list[SampleRequest]] = {}
            live = dict(streams)
            while live:
                [ready], _ = ray.wait(list(live.values()), num_returns=1)
                index = next(index for index, stream in live.items() if stream is ready)
                try:
                    piece = ray.get(next(ready))
                except StopIteration:
                    del live[index]
                    continue
                except Exception as error:  # noqa: BLE001 (re-raised unless a lost or stale worker)
                    if self.rejoin is None or attempt == self.attempts or not _lost_or_stale(error):
                        raise
                    done = {completion.request_id for completion in received[index]}
                    failed[index] = [request for request in pending[index] if request.request_id not in done]
                    del live[index]
                    continue
                received[index].extend(piece)
                if on_chunk is not None:
                    on_chunk(piece)
            if not failed:
                break
            for index in failed:
                wait_until_alive(self.group.workers[index])
            self.rejoin()  # (with --async-steps 1 after an update: the re-issued part samples newer weights)
            self.group.reissued_requests += sum(len(chunk) for chunk in failed.values())
            pending = {**pending, **failed}
            streams = self._issue(failed)
        order = {request.request_id: position for position, request in
                 enumerate(request for index in sorted(self.chunks) for request in self.chunks[index])}
        self.completions = sorted((completion for index in sorted(received) for completion in received[index]),
                                  key=lambda completion: order[completion.request_id])
        return self.completions
