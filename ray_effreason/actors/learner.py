"""LearnerWorker: one DeepSpeed rank of the policy-update group.

K ranks joined by torch.distributed (NCCL on GPU, gloo on CPU) through `deepspeed.init_distributed`;
ZeRO stage 0-3; bf16 on GPU, fp32 on CPU; gradient accumulation over micro-batches (DeepSpeed counts
them: train_batch_size = micro_batch_size * accumulation * ranks; each optimizer step's samples sorted by length
first, `batching.step_micro_batches`, so they pad less); gradient clipping; the frozen reference model for the KL
term.

One call to `train` = one rollout batch shard -> `optimizer_steps` optimizer steps (the paper: 256
samples, two steps of 128, one PPO epoch). Old log-probs (for the PPO ratio) and reference log-probs are
computed by this rank before its first update, on the same model the update uses, as OpenRLHF does.

Sequence packing (`max_tokens_per_micro_batch`, issue 15): each optimizer step's samples go into consecutive
micro-batches of at most that many tokens, padding-free where the model masks attention by position ids
(checked once on the model itself, `_padding_free_supported`; right-padded otherwise), so their number per
step varies. DeepSpeed's own count assumes a fixed number (train_batch_size / (micro_batch_size * ranks)):
this rank marks the step's last micro-batch (`set_gradient_accumulation_boundary`, so that ZeRO-0/1 still
all-reduce once per step), backwards each loss without DeepSpeed's 1/accumulation (`scale_wrt_gas=False`) and
scales it by packing.packed_loss_scales, which gives every aggregation mode the padded path's gradient.
OpenRLHF's `use_dynamic_batch` instead sets DeepSpeed's accumulation to 1 and steps the optimizer only after a
step's last micro-batch (every backward then a boundary: an all-reduce per micro-batch); it and verl scale every
mode by sequences, which for token-mean is not the padded path's step. The ranks agree on the number of
micro-batches per step (an all-reduced max) so that their collectives pair up.

Departures from the paper's code, on purpose:
- log-probs are computed on logits / temperature, the distribution the samples were drawn from (the
  paper's temperature is 1.0, where this changes nothing);
- the reference model is a plain frozen replica on each rank, not a ZeRO-3 sharded engine (7B in bf16
  fits a GPU; shard it if yours does not);
- batch advantage whitening (OpenRLHF's, PAPER.md §1.4) is off unless `whiten_advantages` is set.

`train_objective` (learner_objectives.py) is the baselines' update (issue 12): SFT on the shortest correct
completions, or DPO against the frozen reference; the RL path (`train`) does not go through it. The DeepSpeed
config and the lr schedule are in deepspeed_setup.py.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from typing import Any

import torch

from ray_effreason.actors.deepspeed_setup import deepspeed_config, lr_schedule
from ray_effreason.actors.learner_objectives import OfflineObjectives
from ray_effreason.actors.weight_sync import ParamSpec, WeightSyncGroup, free_port, send_weights
from ray_effreason.batching import (
    MicroBatch,
    Sample,
    step_micro_batches,
    step_token_counts,
    token_mean_scales,
    whitened_advantages,
    whitening_sums,
)
from ray_effreason.config import LearnerConfig, LossConfig
from ray_effreason.devices import DEVICES
from ray_effreason.losses import kl_penalized_advantages, policy_loss, token_logprobs
from ray_effreason.packing import (
    budget_groups,
    fewest_micro_batches,
    packed_loss_scales,
    packed_micro_batches,
    packed_step_token_counts,
    unpack_logprobs,
)


def micro_batch_logprobs(model: torch.nn.Module, batch: MicroBatch, temperature: float) -> torch.Tensor:
    """Each predicted token's log-prob under `model` at `temperature`, (b, T-1), right-padded or padding-free."""
    if batch.position_ids is None:
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention).logits[:, :-1]  # (b, T-1, V)
        return token_logprobs(logits, batch.input_ids[:, 1:], temperature=temperature)  # (b, T-1)
    # Padding-free: no attention mask and no cache. transformers looks for packed sequences in the position ids only
    # then (masking_utils._preprocess_mask_arguments); with a cache (use_cache defaults to True, also in training)
    # the row's sequences would attend to each other.
    logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits[:, :-1]
    row = token_logprobs(logits, batch.input_ids[:, 1:], temperature=temperature)  # (1, L-1)
    return unpack_logprobs(row, batch)  # (b, T-1)


class LearnerWorker(OfflineObjectives):
    """Ray actor: rank `rank` of `world_size`; rank 0 also sends weights to the generation workers."""

    def __init__(self, rank: int, world_size: int, master_addr: str, master_port: int, model_path: str,
                 learner: LearnerConfig, loss: LossConfig, temperature: float, max_new_tokens: int,
                 device: str, seed: int, num_threads: int = 1):
        import deepspeed
        from transformers import AutoModelForCausalLM

        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
        if device == "cpu":
            torch.set_num_threads(num_threads)
        else:
            torch.cuda.set_device(0)  # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU
        deepspeed.init_distributed(dist_backend=DEVICES[device].collective)
        torch.manual_seed(seed)
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device, 0) if device == "cuda" else torch.device("cpu")
        self.learner, self.loss, self.temperature, self.max_new_tokens = learner, loss, temperature, max_new_tokens
        dtype = getattr(torch, DEVICES[device].dtype)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
        self.reference = None
        if loss.kl_coef > 0:
            # The KL reference shares the policy's load: a copy of the weights just read, not a second read of
            # the checkpoint (for 7B, 15 GB less from disk per rank). Copied before anything changes the policy.
            self.reference = copy.deepcopy(model).to(self.device).eval()
            self.reference.requires_grad_(False)
        if learner.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
        self.model_path, self.dtype = model_path, dtype  # DPO loads its frozen reference on first use
        config = deepspeed_config(learner, world_size, device)
        optimizer = None
        if device == "cpu":
            optimizer = torch.optim.AdamW(model.parameters(), lr=learner.lr, betas=(0.9, 0.95),
                                          weight_decay=learner.weight_decay)
        self.engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config,
                                               lr_scheduler=lr_schedule(learner))
        self.sync_group: WeightSyncGroup | None = None
        self.padding_free: bool | None = None  # packing: decided on the first packed update

    # ------------------------------------------------------------------ update

    def _logprobs(self, model: torch.nn.Module, batch: MicroBatch) -> torch.Tensor:
        return micro_batch_logprobs(model, batch, self.temperature)  # (b, T-1)

    @torch.no_grad()
    def _padding_free_supported(self) -> bool:
        """Whether the model keeps a padding-free row's sequences apart: a probe sequence's log-probs after two
        different sequences of the same length must be the same. The same shapes run the same kernels and masked
        keys weigh exactly 0, so a model that masks block-diagonally gives equal values; one that does not (an
        attention implementation that ignores position ids) differs by far more than the tolerance."""
        generator = torch.Generator().manual_seed(0)
        vocab_size = self.engine.module.config.vocab_size
        prefixes = [torch.randint(vocab_size, (5,), generator=generator).tolist() for _ in range(2)]
        probe = torch.randint(vocab_size, (6,), generator=generator).tolist()
        results = []
        for prefix in prefixes:
            batch, = packed_micro_batches([Sample(prefix[:2], prefix[2:], 0.0), Sample(probe[:2], probe[2:], 0.0)],
                                          [range(2)], self.pad_id)
            results.append(self._logprobs(self.engine.module, batch.to(self.device))[1].float())  # (T-1,)
        return torch.allclose(results[0], results[1], rtol=0.0, atol=1e-3)

    def _packed_steps(self, samples: list[Sample]) -> list[list[MicroBatch]]:
        """Each optimizer step's samples in consecutive micro-batches within the token budget (packing.py), as
        many per step on every rank: ZeRO-2 reduces gradients in every backward, ZeRO-3 gathers parameters in every
        forward (old and reference log-probs included) and the boundary's all-reduce must pair up, so a rank that
        could do with fewer micro-batches cuts its samples into the most any rank needs (smaller ones)."""
        import torch.distributed as dist

        if self.padding_free is None:
            self.padding_free = self._padding_free_supported()
            if not self.padding_free:
                warnings.warn(f"{type(self.engine.module).__name__} mixes a padding-free row's sequences; packed "
                              "micro-batches are right-padded (the budget counts padding)", stacklevel=2)
        per_step = self.learner.train_batch_size // self.world_size  # this rank's samples per optimizer step
        if len(samples) % per_step:
            raise ValueError(f"{len(samples)} samples are not whole optimizer steps of {per_step} per rank")
        steps = [samples[start:start + per_step] for start in range(0, len(samples), per_step)]
        budget, padding_free = self.learner.max_tokens_per_micro_batch, self.padding_free
        lengths = [[sample.num_tokens for sample in step] for step in steps]
        counts = torch.tensor([fewest_micro_batches(step, budget, padding_free) for step in lengths],
                              device=self.device)  # (optimizer steps,); on this rank's device: NCCL reduces CUDA only
        dist.all_reduce(counts, op=dist.ReduceOp.MAX)
        return [[batch.to(self.device) for batch in packed_micro_batches(
                    step, budget_groups(step_lengths, budget, count, padding_free), self.pad_id, padding_free)]
                for step, step_lengths, count in zip(steps, lengths, counts.tolist())]

    def _packed_loss_scales(self, steps: list[list[MicroBatch]]) -> list[float]:
        import torch.distributed as dist

        step_tokens = packed_step_token_counts(steps).to(self.device)  # (optimizer steps,)
        if self.loss.aggregation == "token-mean":
            dist.all_reduce(step_tokens)
        return packed_loss_scales(steps, self.loss.aggregation, self.world_size, step_tokens.cpu())

    @torch.no_grad()
    def _prepare(self, batches: list[MicroBatch]) -> dict[str, float]:
        """Old and reference log-probs, then per-token advantages (k1 KL in the reward, as the paper)."""
        kl_sum = kl_count = 0.0
        for batch in batches:
            # The old policy of the PPO ratio is the one that sampled: the learner's own weights in the sequential
            # loop; with --async-steps 1 those are a step ahead, and the generators' log-probs are used instead.
            batch.old_logprobs = (batch.sampling_logprobs if batch.sampling_logprobs is not None
                                  else self._logprobs(self.engine.module, batch))
            if self.reference is not None:
                batch.ref_logprobs = self._logprobs(self.reference, batch)
                log_ratio = (batch.old_logprobs - batch.ref_logprobs) * batch.mask
                kl_sum += float(log_ratio.sum())
                kl_count += float(batch.mask.sum())
            if self.loss.kl_estimator == "k1" and self.reference is not None:
                batch.token_advantages = kl_penalized_advantages(
                    batch.advantages, batch.old_logprobs, batch.ref_logprobs, batch.mask, self.loss.kl_coef)
            else:
                batch.token_advantages = batch.advantages[:, None].expand_as(batch.mask).clone()
        if self.loss.whiten_advantages:
            self._whiten_globally(batches)
        return {"kl_to_ref": kl_sum / max(kl_count, 1.0)}

    def _whiten_globally(self, batches: list[MicroBatch]) -> None:
        """Token-weighted whitening over the whole rollout batch, all ranks (OpenRLHF's, PAPER.md §1.4).

        Not advantages.whiten: that one sees one tensor; these statistics span micro-batches and ranks.
        """
        import torch.distributed as dist

        sums = whitening_sums(batches)
        dist.all_reduce(sums)
        for batch in batches:
            batch.token_advantages = whitened_advantages(batch, sums)

    def _token_mean_scales(self, batches: list[MicroBatch], accumulation: int) -> list[float]:
        """Make "token-mean" a mean over ALL tokens of the optimizer step, across micro-batches and ranks
        (batching.token_mean_scales); the other modes average per sequence and need no scale."""
        if self.loss.aggregation != "token-mean":
            return [1.0] * len(batches)
        import torch.distributed as dist

        # On this rank's device: NCCL reduces CUDA tensors only.
        step_tokens = step_token_counts(batches, accumulation).to(self.device)  # (optimizer steps,)
        dist.all_reduce(step_tokens)
        return token_mean_scales(batches, accumulation, self.world_size, step_tokens.cpu())

    def train(self, samples: list[Sample]) -> dict[str, float]:
        """Update on this rank's shard: len(samples) = optimizer_steps * train_batch_size / world_size."""
        self.engine.train()
        packed = self.learner.max_tokens_per_micro_batch is not None
        if packed:
            steps = self._packed_steps(samples)
        else:
            accumulation = self.engine.gradient_accumulation_steps()
            steps = [[batch.to(self.device) for batch in step] for step in step_micro_batches(
                samples, accumulation * self.learner.micro_batch_size, self.learner.micro_batch_size, self.pad_id)]
        batches = [batch for step in steps for batch in step]
        metrics = self._prepare(batches)
        if packed:
            scales = self._packed_loss_scales(steps)
            weights = [float(batch.mask.shape[0]) for batch in batches]  # metrics: a mean over samples
        else:
            scales = self._token_mean_scales(batches, accumulation)
            weights = [1.0] * len(batches)  # equal micro-batches
        totals: dict[str, float] = {}
        lrs, grad_norms, index = [], [], 0
        for step in steps:
            lrs.append(float(self.engine.get_lr()[0]))  # the lr this optimizer step will use
            for position, batch in enumerate(step):
                if packed:  # before the forward, as DeepSpeed asks: its own count assumes a fixed number
                    self.engine.set_gradient_accumulation_boundary(position == len(step) - 1)
                logprobs = self._logprobs(self.engine, batch)
                loss, loss_metrics = policy_loss(
                    logprobs, batch.old_logprobs, batch.token_advantages, batch.mask,
                    clip_low=self.loss.clip_low, clip_high=self.loss.clip_high, aggregation=self.loss.aggregation,
                    ref_logprobs=batch.ref_logprobs if self.loss.kl_estimator == "k3" else None,
                    kl_coef=self.loss.kl_coef if self.loss.kl_estimator == "k3" else 0.0,
                    kl_estimator="k3", norm_tokens=self.max_new_tokens)
                # packed: no 1/accumulation from DeepSpeed; the scales make each step the padded path's
                self.engine.backward(loss * scales[index], scale_wrt_gas=not packed)
                self.engine.step()
                for key, value in loss_metrics.items():
                    totals[key] = totals.get(key, 0.0) + float(value) * weights[index]
                index += 1
            norm = self.engine.get_global_grad_norm()
            if norm is not None:
                grad_norms.append(float(norm))
        metrics.update({key: value / sum(weights) for key, value in totals.items()})
        if grad_norms:
            metrics["grad_norm"] = sum(grad_norms) / len(grad_norms)
        metrics["optimizer_steps"] = float(len(steps))
        metrics["lr"] = lrs[-1]  # of the last optimizer step of this call
        metrics["lr_first"] = lrs[0]
        if packed:
            metrics["micro_batches"] = float(len(batches))
            metrics["padding_free"] = float(self.padding_free)
        return metrics

    # ------------------------------------------------------------------ weights

    def _gathered(self, parameter: torch.nn.Parameter):
        if self.learner.zero_stage == 3:
            import deepspeed

            return deepspeed.zero.GatheredParameters([parameter], modifier_rank=None)
        return contextlib.nullcontext()

    def _full_named_parameters(self):
        """(name, full tensor) one at a time; under ZeRO-3 every rank must iterate together."""
        for name, parameter in self.engine.module.named_parameters():
            with self._gathered(parameter):
                yield name, parameter.data

    def weight_specs(self) -> list[ParamSpec]:
        specs = []
        for name, parameter in self.engine.module.named_parameters():
            shape = tuple(getattr(parameter, "ds_shape", parameter.shape))
            specs.append(ParamSpec(name, shape, str(parameter.dtype).removeprefix("torch.")))
        return specs

    def sync_address(self) -> tuple[str, int]:
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def init_weight_sync(self, host: str, port: int, world_size: int, backend: str) -> None:
        if self.rank == 0:
            self.sync_group = WeightSyncGroup(host, port, 0, world_size, backend)

    def broadcast_weights(self, specs: list[ParamSpec]) -> None:
        """All learner ranks call this (ZeRO-3 gathers collectively); only rank 0 sends."""
        if self.rank == 0:
            send_weights(self.sync_group, self._full_named_parameters(), specs)
        else:
            for _ in self._full_named_parameters():
                pass

    def weights_for_test(self) -> dict[str, torch.Tensor]:
        return {name: tensor.detach().cpu().clone().float() for name, tensor in self._full_named_parameters()}

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, directory: str, tokenizer_path: str | None = None) -> None:
        """DeepSpeed state (optimizer, scheduler) under directory/deepspeed; HF weights in directory (rank 0)."""
        self.engine.save_checkpoint(os.path.join(directory, "deepspeed"), tag="state")
        state = {name: tensor.detach().cpu().clone() for name, tensor in self._full_named_parameters()}
        if self.rank == 0:
            module = self.engine.module
            module.save_pretrained(directory, state_dict=state, safe_serialization=True)
            if tokenizer_path:
                from transformers import AutoTokenizer

                AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(directory)

    def load_checkpoint(self, directory: str) -> None:
        path, _ = self.engine.load_checkpoint(os.path.join(directory, "deepspeed"), tag="state")
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint under {directory}/deepspeed")


class LearnerGroup:
    """Driver-side handle over the K LearnerWorker ranks."""

    def __init__(self, workers: list[Any]):
        self.workers = workers

    def train(self, samples: list[Sample], optimizer_steps: int) -> dict[str, float]:
        """Shard each optimizer step's samples evenly over ranks, so every step sees the whole step batch."""
        import ray

        ranks = len(self.workers)
        per_step = len(samples) // optimizer_steps
        shards: list[list[Sample]] = [[] for _ in range(ranks)]
        for step in range(optimizer_steps):
            step_samples = samples[step * per_step:(step + 1) * per_step]
            per_rank = per_step // ranks
            for rank in range(ranks):
                shards[rank].extend(step_samples[rank * per_rank:(rank + 1) * per_rank])
        results = ray.get([worker.train.remote(shard) for worker, shard in zip(self.workers, shards)])
        return {key: sum(result[key] for result in results) / ranks for key in results[0]}

    def train_objective(self, objective: str, items: list[Any], optimizer_steps: int,
                        beta: float = 0.1) -> dict[str, float]:
        """SFT samples or DPO pairs (LearnerWorker.train_objective), sharded per optimizer step as `train`."""
        import ray

        ranks = len(self.workers)
        per_step, per_rank = len(items) // optimizer_steps, len(items) // optimizer_steps // ranks
        shards = [[item for step in range(optimizer_steps)
                   for item in items[step * per_step + rank * per_rank: step * per_step + (rank + 1) * per_rank]]
                  for rank in range(ranks)]
        results = ray.get([worker.train_objective.remote(objective, shard, beta)
                           for worker, shard in zip(self.workers, shards)])
        return {key: sum(result[key] for result in results) / ranks for key in results[0]}

    def broadcast_weights(self, specs: list[ParamSpec]) -> list[Any]:
        """Start the broadcast on every rank; the caller also starts the receivers, then waits on both."""
        return [worker.broadcast_weights.remote(specs) for worker in self.workers]

    def save_checkpoint(self, directory: str, tokenizer_path: str | None) -> None:
        import ray

        ray.get([worker.save_checkpoint.remote(directory, tokenizer_path) for worker in self.workers])

    def load_checkpoint(self, directory: str) -> None:
        import ray

        ray.get([worker.load_checkpoint.remote(directory) for worker in self.workers])
