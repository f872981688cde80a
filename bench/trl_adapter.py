"""TRL's RLOOTrainer driven by one TrainConfig: the comparison side of bench_rl_vs_trl.py.

`trl_arguments` is the one translation of our knobs into TRL's (`RLOOConfig`); `trl_reward` grades with
the task's grader (a truncated sample is never correct, as in our verifier actors) and scores with our
pure `rewards.length_penalized_rewards` on each (B, G) group; `run_trl` times TRL's phases around its
own methods. What still differs algorithmically is listed in bench_rl_vs_trl.py's docstring.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ray_effreason.config import TrainConfig

PHASES = ("generate", "grade", "update", "sync", "other")


def trl_reward(task: Any, schedule: list[Any], config: TrainConfig, eos_token_id: int):
    """TRL reward function: the task's grade, then our length_penalized_rewards on each (B, G) group."""
    from ray_effreason.rewards import length_penalized_rewards

    def length_penalized(prompts, completions, completion_ids, example_index, **kwargs) -> list[float]:  # noqa: ARG001
        G = config.rollout.samples_per_prompt
        # a sample without EOS is truncated and never correct, as in our verifier actors
        correct = np.array([bool(task.grade(completion[0]["content"], schedule[index])) and ids[-1:] == [eos_token_id]
                            for completion, ids, index in zip(completions, completion_ids, example_index)])
        num_tokens = np.array([len(ids) for ids in completion_ids])  # EOS included, as ours and vLLM count
        # TRL hands over the whole generation batch, each prompt's G samples consecutive: (B, G)
        rewards = length_penalized_rewards(correct.reshape(-1, G), num_tokens.reshape(-1, G), config.reward.alpha)
        return rewards.ravel().tolist()

    return length_penalized


def trl_arguments(config: TrainConfig, output_dir: Path) -> Any:
    """RLOOConfig with the TrainConfig's values: the one place our knobs are translated into TRL's."""
    from trl import RLOOConfig

    rollout, learner, loss = config.rollout, config.learner, config.loss
    optimizer_steps = rollout.prompts_per_step * rollout.samples_per_prompt // learner.train_batch_size
    return RLOOConfig(
        output_dir=str(output_dir), seed=config.seed, use_cpu=config.model.device == "cpu", bf16=False,
        report_to="none", save_strategy="no", logging_steps=10**6, disable_tqdm=True, shuffle_dataset=False,
        max_steps=config.num_steps * optimizer_steps,
        per_device_train_batch_size=learner.micro_batch_size,
        gradient_accumulation_steps=learner.train_batch_size // learner.micro_batch_size,
        generation_batch_size=rollout.prompts_per_step * rollout.samples_per_prompt,
        num_generations=rollout.samples_per_prompt, max_completion_length=rollout.max_new_tokens,
        temperature=rollout.temperature, top_p=rollout.top_p, top_k=0,
        learning_rate=learner.lr, adam_beta1=0.9, adam_beta2=0.95, weight_decay=learner.weight_decay,
        max_grad_norm=learner.grad_clip, lr_scheduler_type="constant_with_warmup", warmup_steps=learner.warmup_steps,
        beta=loss.kl_coef, epsilon=loss.clip_low, num_iterations=1,
        gradient_checkpointing=learner.gradient_checkpointing,  # TRL's default is True; ours is off
    )


def run_trl(config: TrainConfig, schedule: list[Any], threads: int,
            output_dir: Path) -> tuple[list[dict[str, float]], float]:
    """One RLOOTrainer run on `schedule` (the examples our driver visits, in order): per rollout step wall
    time, generated tokens, the phase split; startup seconds."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import RLOOTrainer

    from ray_effreason.tasks import load_task

    began = time.time()
    torch.set_num_threads(threads)
    model = config.model.model
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": example.prompt}], "example_index": index}
                                 for index, example in enumerate(schedule)])
    tokenizer = AutoTokenizer.from_pretrained(model)
    task = load_task("synthetic", split="train")
    steps: list[dict[str, float]] = []
    current = dict.fromkeys(PHASES, 0.0) | {"tokens": 0.0, "max_tokens": 0.0, "logprobs": 0.0}
    clock = {"startup": 0.0}
    rollout = config.rollout
    optimizer_steps = rollout.prompts_per_step * rollout.samples_per_prompt // config.learner.train_batch_size

    class TimedRLOOTrainer(RLOOTrainer):
        """Times the phases around RLOOTrainer's own methods (generate and grade nest in score)."""

        def _generate(self, prompts):
            start = time.perf_counter()
            prompt_ids, completion_ids, completions = super()._generate(prompts)
            current["generate"] += time.perf_counter() - start
            current["tokens"] += sum(len(ids) for ids in completion_ids)
            current["max_tokens"] = max(len(ids) for ids in completion_ids)
            return prompt_ids, completion_ids, completions

        def _generate_and_score_completions(self, inputs):
            # generate + grade + old/ref log-probs: "logprobs" is what is left after the first two
            start, before = time.perf_counter(), current["generate"] + current["grade"]
            output = super()._generate_and_score_completions(inputs)
            current["logprobs"] += time.perf_counter() - start - (current["generate"] + current["grade"] - before)
            return output

        def _calculate_rewards(self, *args, **kwargs):
            start = time.perf_counter()
            rewards = super()._calculate_rewards(*args, **kwargs)
            current["grade"] += time.perf_counter() - start
            return rewards

    class RolloutClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ARG002  (TrainerCallback's signature)
            clock["startup"] = time.time() - began
            self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ARG002
            if state.global_step % optimizer_steps:
                return
            now = time.perf_counter()
            wall = now - self.last
            # update = old/ref log-probs + forward/backward + optimizer (as ours); other = the rest
            steps.append({**current, "wall": wall, "update": wall - current["generate"] - current["grade"],
                          "other": 0.0})
            current.update(dict.fromkeys(PHASES, 0.0) | {"tokens": 0.0, "max_tokens": 0.0, "logprobs": 0.0})
            self.last = now

    args = trl_arguments(config, output_dir)
    trainer = TimedRLOOTrainer(model=AutoModelForCausalLM.from_pretrained(model), reward_funcs=trl_reward(
        task, schedule, config, tokenizer.eos_token_id), args=args, train_dataset=dataset,
        processing_class=tokenizer, callbacks=[RolloutClock()])
    trainer.train()
    return steps[1:], clock["startup"]  # the first rollout step is warm-up


