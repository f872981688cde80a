"""What each device means for the run: the collective backend and the compute dtype.

One place for the facts the learner, the generation workers and the weight-sync group each used to
restate: NCCL and bf16 on CUDA; gloo and fp32 on CPU (bf16 on CPU differed from transformers before any
update and made seeded samples depend on batch order, see docs/gpu.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    collective: str  # torch.distributed backend of the learner group and the weight-sync group
    dtype: str  # torch dtype name of the policy, the reference model and the generation engines


DEVICES = {"cpu": Device(collective="gloo", dtype="float32"), "cuda": Device(collective="nccl", dtype="bfloat16")}
