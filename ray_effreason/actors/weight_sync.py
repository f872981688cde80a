"""Weight sync: learner rank 0 broadcasts the policy to every generation worker after each update.

A process group of its own (learner rank 0 = rank 0, generation workers = ranks 1..N), separate from the
learners' DeepSpeed group, built directly on a TCPStore: `ProcessGroupNCCL` on GPU (as OpenRLHF does for
its vLLM engines), `ProcessGroupGloo` on CPU. Same code, backend chosen by device.

Tensors travel in flat buckets (one broadcast per bucket, not per parameter), grouped by dtype; the
receivers know every parameter's name, shape and dtype beforehand (`ParamSpec`, sent through Ray).
"""

from __future__ import annotations

import datetime
import socket
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

DEFAULT_BUCKET_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ParamSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # e.g. "float32", "bfloat16"

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


def buckets(specs: list[ParamSpec], bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> list[list[ParamSpec]]:
    """Consecutive specs of one dtype, each bucket at most bucket_bytes (a larger single tensor gets its own)."""
    out: list[list[ParamSpec]] = []
    current: list[ParamSpec] = []
    size = 0
    for spec in specs:
        nbytes = spec.numel * torch.empty((), dtype=spec.torch_dtype).element_size()
        if current and (spec.dtype != current[0].dtype or size + nbytes > bucket_bytes):
            out.append(current)
            current, size = [], 0
        current.append(spec)
        size += nbytes
    if current:
        out.append(current)
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


class WeightSyncGroup:
    """One rank of the sync group. Every rank must construct it at the same time (rendezvous)."""

    def __init__(self, host: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float = 600.0):
        if backend not in ("gloo", "nccl"):
            raise ValueError(f"backend={backend!r}; choose one of ['gloo', 'nccl']")
        timeout = datetime.timedelta(seconds=timeout_s)
        store = dist.TCPStore(host, port, world_size, is_master=(rank == 0), timeout=timeout)
        store = dist.PrefixStore("ray_effreason_weight_sync", store)
        if backend == "gloo":
            self.group = dist.ProcessGroupGloo(store, rank, world_size, timeout)
        else:
            options = dist.ProcessGroupNCCL.Options()
            options._timeout = timeout
            self.group = dist.ProcessGroupNCCL(store, rank, world_size, options)
        self.rank, self.world_size, self.backend = rank, world_size, backend
        self.device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> None:
        options = dist.BroadcastOptions()
        options.rootRank = src
        self.group.broadcast([tensor], options).wait()


def send_weights(group: WeightSyncGroup, named_tensors: Iterator[tuple[str, torch.Tensor]],
                 specs: list[ParamSpec], bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
    """Rank 0: broadcast tensors in the order of `specs`, bucketed like the receivers expect.

    `named_tensors` is consumed lazily, so a ZeRO-3 learner can gather one parameter at a time.
    """
    iterator = iter(named_tensors)
    for bucket in buckets(specs, bucket_bytes):
        parts = []
        for spec in bucket:
            name, tensor = next(iterator)
            if name != spec.name:
                raise RuntimeError(f"weight sync order mismatch: got {name}, expected {spec.name}")
            parts.append(tensor.detach().to(group.device, spec.torch_dtype).reshape(-1))
        group.broadcast(torch.cat(parts))


def receive_weights(group: WeightSyncGroup, specs: list[ParamSpec],
                    bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> Iterator[tuple[str, torch.Tensor]]:
    """Ranks 1..N: yield (name, tensor) as buckets arrive (views into the received flat buffer)."""
    for bucket in buckets(specs, bucket_bytes):
        flat = torch.empty(sum(spec.numel for spec in bucket), dtype=bucket[0].torch_dtype, device=group.device)
        group.broadcast(flat)
        offset = 0
        for spec in bucket:
            yield spec.name, flat[offset:offset + spec.numel].view(spec.shape)
            offset += spec.numel
