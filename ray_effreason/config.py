"""Configuration: frozen dataclasses, one per concern; every field carries its help text.

Defaults follow the paper (PAPER.md §2): G = 8 samples per prompt, 32 prompts per rollout step, two
optimizer steps of 128 samples per rollout, lr 5e-6 (1.5B), temperature 1.0, 32,000 new tokens, KL 1e-3
(k1, in the reward), clip 0.2, 3,200 prompts. CLI flags derive from the fields (`add_arguments`,
`from_arguments`): a value given on the command line is the value used, and `to_dict` logs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with help text (shown by --help)."""
    return field(default=default, metadata={"help": help, **kwargs})


def _check_choice(name: str, value: Any, valid: tuple) -> None:
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(valid)}")


def _check_positive(config: Any, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be > 0, got {getattr(config, name)!r}")


@dataclass(frozen=True)
class ModelConfig:
    model: str = option("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "policy model: local path or Hugging Face id")
    tokenizer: str | None = option(None, "tokenizer path or id (default: the model's)")
    device: str = option("auto", "auto | cpu | cuda: picks vLLM+NCCL+bf16 on cuda, transformers+gloo+fp32 on cpu")

    def __post_init__(self) -> None:
        _check_choice("device", self.device, ("auto", "cpu", "cuda"))


@dataclass(frozen=True)
class RolloutConfig:
    samples_per_prompt: int = option(8, "G: samples per prompt (the paper: 8)")
    prompts_per_step: int = option(32, "B: prompts per rollout step (the paper: 32)")
    temperature: float = option(1.0, "sampling temperature for rollouts (the paper: 1.0)")
    top_p: float = option(1.0, "nucleus sampling for rollouts (the paper: 1.0)")
    max_new_tokens: int = option(32000, "generation budget in tokens; samples that hit it are truncated (reward 0)")
    max_prompt_tokens: int = option(512, "prompts longer than this many tokens are an error, never silently cut")
    num_generators: int = option(1, "generation worker actors (each a vLLM engine on GPU)")
    generator_backend: str = option("auto", "auto | vllm | transformers (auto: vllm on cuda, transformers on cpu)")
    tensor_parallel_size: int = option(1, "vLLM tensor parallel GPUs per generation worker")
    gpu_memory_utilization: float = option(0.85, "vLLM gpu_memory_utilization")
    generation_batch_size: int = option(64, "transformers backend: sequences per generate() call")

    def __post_init__(self) -> None:
        _check_positive(self, "samples_per_prompt", "prompts_per_step", "max_new_tokens", "num_generators",
                        "tensor_parallel_size", "generation_batch_size", "max_prompt_tokens")
        if self.samples_per_prompt < 2:
            raise ValueError("samples_per_prompt must be >= 2: RLOO needs a leave-one-out baseline")
        _check_choice("generator_backend", self.generator_backend, ("auto", "vllm", "transformers"))
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 for RL rollouts, got {self.temperature}")


@dataclass(frozen=True)
class RewardConfig:
    alpha: float = option(0.2, "length penalty strength alpha in [0, 1); 0 = plain correctness (the RL control)")
    num_verifiers: int = option(2, "verifier actors grading in parallel")
    grade_timeout_s: float = option(5.0, "per-answer grading time limit in seconds")

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha} (alpha >= 1 lets a correct answer score 0)")
        _check_positive(self, "num_verifiers", "grade_timeout_s")


@dataclass(frozen=True)
class LossConfig:
    advantage: str = option("rloo", "rloo | grpo | grpo_noscale (the paper: rloo)")
    aggregation: str = option("seq-mean-token-mean", "seq-mean-token-mean (paper) | token-mean | seq-mean-token-sum-norm")
    clip_low: float = option(0.2, "PPO clip epsilon (the paper: 0.2)")
    clip_high: float | None = option(None, "upper clip epsilon for clip-higher (default: = clip_low)")
    kl_coef: float = option(1e-3, "KL-to-reference coefficient (the paper: 1e-3)")
    kl_estimator: str = option("k1", "k1: in the reward, as the paper | k3: in the loss")
    whiten_advantages: bool = option(False, "whiten advantages over the batch as OpenRLHF does (paper code; off)")

    def __post_init__(self) -> None:
        _check_choice("advantage", self.advantage, ("rloo", "grpo", "grpo_noscale"))
        _check_choice("aggregation", self.aggregation,
                      ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"))
        _check_choice("kl_estimator", self.kl_estimator, ("k1", "k3"))


@dataclass(frozen=True)
class LearnerConfig:
    num_learners: int = option(1, "DeepSpeed ranks (one GPU each on cuda)")
    zero_stage: int = option(2, "DeepSpeed ZeRO stage 0-3 (the paper: 2 for 1.5B, 3 for 7B)")
    lr: float = option(5e-6, "learning rate (the paper: 5e-6 for 1.5B, 2e-6 for 7B)")
    warmup_steps: int = option(6, "linear warmup optimizer steps, then constant (the paper: 6)")
    weight_decay: float = option(0.0, "AdamW weight decay (the paper: 0)")
    grad_clip: float = option(1.0, "gradient norm clip (the paper: 1.0)")
    train_batch_size: int = option(128, "samples per optimizer step, all ranks (the paper: 128, so 2 steps per rollout)")
    micro_batch_size: int = option(1, "samples per forward/backward per rank (gradient accumulation fills the rest)")
    gradient_checkpointing: bool = option(False, "activation checkpointing (saves memory on long sequences)")
    offload_optimizer: bool = option(False, "ZeRO optimizer offload to CPU (the paper's 7B --adam_offload)")
    num_cpus_per_actor: float = option(1.0, "CPUs Ray reserves per learner/generator actor (fractions allowed on CPU)")

    def __post_init__(self) -> None:
        _check_choice("zero_stage", self.zero_stage, (0, 1, 2, 3))
        _check_positive(self, "num_learners", "lr", "train_batch_size", "micro_batch_size", "num_cpus_per_actor")


@dataclass(frozen=True)
class TrainConfig:
    task: str = option("numina_math", "training task name (see ray_effreason.tasks.load_task)")
    task_path: str | None = option(None, "local JSONL for the task (default: the Hugging Face dataset)")
    output_dir: str = option("runs/train", "where metrics, rollouts and checkpoints go")
    max_prompts: int = option(3200, "training prompts used (the paper: the first 3,200)")
    steps: int | None = option(None, "rollout steps (default: max_prompts / prompts_per_step, the paper: 100)")
    save_every: int = option(10, "checkpoint every N rollout steps (the paper: 10)")
    keep_checkpoints: int = option(10, "most recent checkpoints kept (the paper: 10)")
    rollouts_logged: int = option(16, "rollouts per step written to rollouts/*.parquet")
    seed: int = option(42, "seed for data order, sampling and initialization (the paper: 42)")
    resume: bool = option(False, "continue from the last checkpoint in output_dir")
    run_name: str | None = option(None, "name shown in logs and metrics (default: alpha-<alpha>)")
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)

    def __post_init__(self) -> None:
        _check_positive(self, "max_prompts", "save_every", "keep_checkpoints")
        samples = self.rollout.prompts_per_step * self.rollout.samples_per_prompt
        per_step = self.learner.train_batch_size
        if samples % per_step:
            raise ValueError(f"prompts_per_step * samples_per_prompt = {samples} must be a multiple of "
                             f"train_batch_size = {per_step}")
        ranks_micro = self.learner.num_learners * self.learner.micro_batch_size
        if per_step % ranks_micro:
            raise ValueError(f"train_batch_size = {per_step} must be a multiple of num_learners * "
                             f"micro_batch_size = {ranks_micro}")

    @property
    def num_steps(self) -> int:
        return self.steps if self.steps is not None else self.max_prompts // self.rollout.prompts_per_step

    @property
    def name(self) -> str:
        return self.run_name or f"alpha-{self.reward.alpha:g}"


# ---------------------------------------------------------------- CLI derived from the dataclasses


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _leaf_type(annotation: Any) -> type:
    """str | None -> str; float | None -> float."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return args[0] if args else annotation


def add_arguments(parser: argparse.ArgumentParser, cls: type, defaults: dict[str, Any] | None = None) -> None:
    """Add one flag per leaf field of `cls` (nested dataclasses flattened; leaf names are unique)."""
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        kind = hints[item.name]
        if dataclasses.is_dataclass(kind):
            group = parser.add_argument_group(item.name)
            add_arguments(group, kind, defaults)
            continue
        default = (defaults or {}).get(item.name, item.default)
        leaf = _leaf_type(kind)
        help_text = f"{item.metadata.get('help', '')} (default: {default})"
        if leaf is bool:
            parser.add_argument(_flag(item.name), action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            parser.add_argument(_flag(item.name), type=leaf, default=default, help=help_text)


def from_arguments(cls: type, arguments: argparse.Namespace | dict[str, Any]) -> Any:
    """Build `cls` (and its nested dataclasses) from parsed flags."""
    values = vars(arguments) if isinstance(arguments, argparse.Namespace) else arguments
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for item in dataclasses.fields(cls):
        kind = hints[item.name]
        if dataclasses.is_dataclass(kind):
            kwargs[item.name] = from_arguments(kind, values)
        elif item.name in values:
            kwargs[item.name] = values[item.name]
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Inverse of to_dict (for resume): nested dicts become nested dataclasses."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for item in dataclasses.fields(cls):
        if item.name not in data:
            continue
        kind = hints[item.name]
        kwargs[item.name] = from_dict(kind, data[item.name]) if dataclasses.is_dataclass(kind) else data[item.name]
    return cls(**kwargs)


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'. Same code path, backend chosen by device."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def flat_fields(config: Any) -> dict[str, Any]:
    """Leaf field name -> value, nested dataclasses flattened (the CLI's namespace)."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        values.update(flat_fields(value) if dataclasses.is_dataclass(value) else {item.name: value})
    return values


def to_arguments(config: Any) -> list[str]:
    """The command-line flags that rebuild `config` (for launching a child job with exactly these values)."""
    arguments: list[str] = []
    for name, value in flat_fields(config).items():
        if isinstance(value, bool):
            arguments.append(_flag(name) if value else "--no-" + name.replace("_", "-"))
        elif value is not None:
            arguments += [_flag(name), str(value)]
    return arguments
