"""vLLM worker extension for weight sync (GPU only; vLLM is not installable on the CPU dev machines).

vLLM's documented RLHF pattern (examples/offline_inference/rlhf.py): pass
`worker_extension_cls="ray_effreason.actors.vllm_extension.WeightSyncExtension"` to `LLM(...)`; its
methods then run inside every vLLM worker process through `llm.collective_rpc(name, args)`, where
`self.device`, `self.model_runner` and the tensor-parallel rank are available. NOT run in this
repository's CI (no CUDA there); docs/gpu.md records what was run on GPU machines.
"""

from __future__ import annotations


class WeightSyncExtension:
    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> None:
        from vllm.distributed.parallel_state import get_world_group

        from ray_effreason.actors.weight_sync import WeightSyncGroup

        rank = rank_offset + get_world_group().rank  # one rank per tensor-parallel worker
        self.weight_sync_group = WeightSyncGroup(host, port, rank, world_size, backend)

    def receive_weights(self, specs) -> None:
        from ray_effreason.actors.weight_sync import receive_weights

        # load_weights takes (name, tensor) pairs of the full (unsharded) HF checkpoint and shards them.
        self.model_runner.model.load_weights(weights=receive_weights(self.weight_sync_group, specs))
