"""The baselines' updates on the learner group (issue 12): SFT on the shortest correct completions, DPO against the
frozen reference. A mixin of LearnerWorker (its engine, reference model, micro-batch settings); the RL update
(`LearnerWorker.train`) does not go through it.
"""

from __future__ import annotations

from typing import Any

import torch

from ray_effreason.batching import micro_batches, preference_micro_batches, step_token_counts, token_mean_scales
from ray_effreason.preference_losses import dpo_loss, sequence_logprobs, sft_loss


class OfflineObjectives:
    """`train_objective`, for LearnerWorker."""

    def train_objective(self, objective: str, items: list[Any], beta: float = 0.1) -> dict[str, float]:
        """Supervised updates on this rank's shard, one optimizer step per train_batch_size / ranks items:

            "sft"  items are Samples (the shortest correct completions): preference_losses.sft_loss, made a
                   mean over ALL completion tokens of the optimizer step (batching.token_mean_scales)
            "dpo"  items are (chosen, rejected) Sample pairs: preference_losses.dpo_loss with `beta`, against
                   the frozen reference (the initial policy; loaded here if the KL term did not load it)

        `train` (the RL update) is not involved: no old log-probs, no advantages, no clipping.
        """
        if objective not in ("sft", "dpo"):
            raise ValueError(f"unknown objective {objective!r}; choose one of ['sft', 'dpo']")
        if self.learner.max_tokens_per_micro_batch is not None:  # a flag given is a flag used, or an error
            raise ValueError("max_tokens_per_micro_batch (sequence packing) applies to the RL update only; "
                             "SFT and DPO take micro_batch_size samples per micro-batch")
        self.engine.train()
        size, pad_id = self.learner.micro_batch_size, self.pad_id
        chunks = micro_batches if objective == "sft" else preference_micro_batches
        batches = [batch.to(self.device) for batch in chunks(items, size, pad_id)]
        accumulation = self.engine.gradient_accumulation_steps()
        scales = [1.0] * len(batches)
        if objective == "sft":
            import torch.distributed as dist

            step_tokens = step_token_counts(batches, accumulation).to(self.device)  # (optimizer steps,)
            dist.all_reduce(step_tokens)
            scales = token_mean_scales(batches, accumulation, self.world_size, step_tokens.cpu())
        elif self.reference is None:
            from transformers import AutoModelForCausalLM

            self.reference = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.dtype).to(self.device)
            self.reference.eval().requires_grad_(False)
        totals: dict[str, float] = {}
        for index, batch in enumerate(batches):
            logprobs = self._logprobs(self.engine, batch)  # (b, T-1)
            if objective == "sft":
                loss, metrics = sft_loss(logprobs, batch.mask)
            else:
                with torch.no_grad():
                    reference = sequence_logprobs(self._logprobs(self.reference, batch), batch.mask)  # (2p,)
                policy, pairs = sequence_logprobs(logprobs, batch.mask), batch.input_ids.shape[0] // 2
                loss, metrics = dpo_loss(policy[:pairs], policy[pairs:], reference[:pairs], reference[pairs:], beta)
            self.engine.backward(loss * scales[index])
            self.engine.step()
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + float(value)
        result = {key: value / len(batches) for key, value in totals.items()}
        result["optimizer_steps"] = float(len(batches) // accumulation)
        return result
