"""Configuration: one frozen dataclass per concern; each knob is declared once, with its default, help and check.

    ModelConfig     which model and tokenizer, on which device
    RolloutConfig   sampling and the generation workers (SamplingConfig, what a worker needs, is derived)
    RewardConfig    the length-penalized reward and the verifier pool
    ControllerConfig  alpha driven toward a token budget or held by an accuracy floor (optional)
    LossConfig      advantage estimator, PPO-clip, aggregation, KL
    LearnerConfig   the DeepSpeed learner group and its optimizer
    TrainConfig, EvalConfig and SweepConfig (here) compose them; nothing is re-declared. The offline
    baselines' own knobs (OfflineConfig) live with them in offline_methods.py.

Defaults follow the paper (PAPER.md §2): G = 8 samples per prompt, 32 prompts per rollout step, two
optimizer steps of 128 samples per rollout, lr 5e-6 (1.5B), temperature 1.0, 32,000 new tokens, KL 1e-3
(k1, in the reward), clip 0.2, 3,200 prompts. Valid choices are read from the module that implements them
(`losses.AGGREGATIONS`, `advantages.ADVANTAGE_ESTIMATORS`, `devices.DEVICES`, `GENERATOR_BACKENDS`, `tasks.TASKS`).

Command lines derive from the dataclasses (`cli.py`): one flag per leaf field, nested dataclasses flattened
(`config_tree.py`). A composing class may hide leaves it sets itself (`nested(..., hide=...)`) or prefix them
(`prefix="eval_"`); `config_tree.from_flat` builds a config from flat names and rejects an unknown name.
"""

from __future__ import annotations

from dataclasses import dataclass

from ray_effreason.advantages import ADVANTAGE_ESTIMATORS
from ray_effreason.alpha_controller import ControllerConfig
from ray_effreason.answer_extraction import EXTRACTIONS
from ray_effreason.budget_prompts import WORDINGS
from ray_effreason.config_tree import check_choice, check_positive, nested, option, split_list
from ray_effreason.devices import DEVICES
from ray_effreason.losses import AGGREGATIONS, KL_ESTIMATORS
from ray_effreason.rewards import REWARDS
from ray_effreason.tasks.base import PROMPT_TEMPLATES

# The generator backends' names; the classes are in actors/generator.py (which imports torch and vLLM).
# "auto": vLLM where it is installed, else transformers (actors/launch.generator_backend).
GENERATOR_BACKENDS = ("auto", "vllm", "transformers")


# ---------------------------------------------------------------- the five concerns


@dataclass(frozen=True)
class ModelConfig:
    model: str = option("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "policy model: local path or Hugging Face id")
    tokenizer: str | None = option(None, "tokenizer path or id (default: the model's; the paper evaluates with "
                                         "the base model's)")
    device: str = option("auto", "auto | " + " | ".join(DEVICES) + ": auto is cuda when the Ray cluster has GPUs")

    def __post_init__(self) -> None:
        check_choice("device", self.device, ("auto", *DEVICES))


@dataclass(frozen=True)
class SamplingConfig:
    """What a generation worker needs per call; derived from RolloutConfig (`RolloutConfig.sampling()`)."""

    temperature: float
    top_p: float
    max_new_tokens: int
    max_prompt_tokens: int
    prompt_template: str = "chat"
    logprobs: bool = False  # return each sampled token's log-prob under the sampling distribution (Completion)


@dataclass(frozen=True)
class RolloutConfig:
    samples_per_prompt: int = option(8, "G: samples per prompt (the paper: 8)")
    prompts_per_step: int = option(32, "B: prompts per rollout step (the paper: 32)")
    temperature: float = option(1.0, "sampling temperature (the paper: 1.0 in training, 0.6 in evaluation)")
    top_p: float = option(1.0, "nucleus sampling (the paper: 1.0)")
    max_new_tokens: int = option(32000, "generation budget in tokens; samples that hit it are truncated (reward 0)")
    max_prompt_tokens: int = option(512, "prompts longer than this many tokens are an error, never silently cut")
    num_generators: int = option(1, "generation worker actors (each a vLLM engine on GPU)")
    generator_backend: str = option("auto", " | ".join(GENERATOR_BACKENDS)
                                    + " (auto: vllm where it is installed, else transformers)")
    tensor_parallel_size: int = option(1, "vLLM tensor parallel GPUs per generation worker")
    gpu_memory_utilization: float = option(0.85, "vLLM gpu_memory_utilization")
    generation_batch_size: int = option(64, "transformers backend: sequences per generate() call")
    prompt_template: str = option("chat", " | ".join(PROMPT_TEMPLATES) + ": the tokenizer's chat template (the "
                                  "paper's evaluation) or the paper's literal training string (PAPER.md §8)")

    def __post_init__(self) -> None:
        check_choice("prompt_template", self.prompt_template, PROMPT_TEMPLATES)
        check_positive(self, "samples_per_prompt", "prompts_per_step", "max_new_tokens", "num_generators",
                       "tensor_parallel_size", "generation_batch_size", "max_prompt_tokens")
        if self.samples_per_prompt < 2:
            raise ValueError("samples_per_prompt must be >= 2: RLOO needs a leave-one-out baseline")
        check_choice("generator_backend", self.generator_backend, GENERATOR_BACKENDS)
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (sampling), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def sampling(self, max_new_tokens: int | None = None, logprobs: bool = False) -> SamplingConfig:
        """The per-call sampling settings (`max_new_tokens` overrides the budget, e.g. for a forced answer)."""
        return SamplingConfig(self.temperature, self.top_p, max_new_tokens or self.max_new_tokens,
                              self.max_prompt_tokens, self.prompt_template, logprobs)


@dataclass(frozen=True)
class RewardConfig:
    alpha: float = option(0.2, "length penalty strength alpha in [0, 1); 0 = plain correctness (the RL control)")
    num_verifiers: int = option(2, "verifier actors grading in parallel")
    grade_timeout_s: float = option(5.0, "per-answer grading time limit in seconds (past it: not correct)")
    answer_extraction: str = option("boxed", " | ".join(EXTRACTIONS) + ": where the answer is read: the last "
                                    "\\boxed{} (training, as the paper), or the paper's evaluation fallbacks to "
                                    "'the answer is' and the last number")
    # The length reward and each one's own knobs (rewards.REWARDS; formulas and citations in length_rewards.py).
    reward: str = option("arora_zanette", " | ".join(REWARDS) + ": the length reward (arora_zanette: the paper's; "
                         "the others are issue 12's comparison, length_rewards.py)")
    kimi_weight: float = option(1.0, "kimi: weight of Kimi k1.5's length reward added to correctness, in [0, 2)")
    overlong_max_tokens: int | None = option(None, "dapo_overlong: L_max, where the punishment reaches -1 "
                                                   "(default: max_new_tokens, as DAPO)")
    overlong_buffer_ratio: float = option(0.2, "dapo_overlong: L_cache / L_max, the soft-punishment buffer "
                                               "(DAPO: 4096 of 20480 = 0.2)")
    cosine_max_tokens: int | None = option(None, "cosine: T, the length where the cosine reaches its long end "
                                                 "(default: max_new_tokens, as Yeo et al.)")
    truncation_tokens: int | None = option(None, "dler_truncation: L, answers longer than this score 0 "
                                                 "(default: max_new_tokens, i.e. plain correctness)")
    l1_alpha: float = option(3e-4, "l1_max: reward per token under budget (L1: 3e-4, for budgets of thousands)")
    l1_delta: float = option(0.5, "l1_max: reward of a correct answer exactly at budget (L1: 0.5)")
    l1_budget_min: int = option(100, "l1_max: smallest budget written in a training prompt (L1: 100)")
    l1_budget_max: int = option(4000, "l1_max: largest budget written in a training prompt (L1: 4000)")

    def __post_init__(self) -> None:
        check_choice("answer_extraction", self.answer_extraction, EXTRACTIONS)
        check_choice("reward", self.reward, REWARDS)
        check_positive(self, "overlong_max_tokens", "overlong_buffer_ratio", "cosine_max_tokens",
                       "truncation_tokens", "l1_alpha", "l1_budget_min")
        if not 0.0 <= self.kimi_weight < 2.0:
            raise ValueError(f"kimi_weight must be in [0, 2), got {self.kimi_weight} (>= 2: a long correct answer "
                             "scores at or below a short wrong one, open-r1#360)")
        if not 0.0 < self.overlong_buffer_ratio <= 1.0 or not 0.0 <= self.l1_delta <= 1.0:
            raise ValueError(f"overlong_buffer_ratio must be in (0, 1] and l1_delta in [0, 1], got "
                             f"{self.overlong_buffer_ratio}, {self.l1_delta}")
        if self.l1_budget_max < self.l1_budget_min:
            raise ValueError(f"l1_budget_max={self.l1_budget_max} < l1_budget_min={self.l1_budget_min}")
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha} (alpha >= 1 lets a correct answer score 0)")
        check_positive(self, "num_verifiers", "grade_timeout_s")


@dataclass(frozen=True)
class LossConfig:
    advantage: str = option("rloo", " | ".join(ADVANTAGE_ESTIMATORS) + " (the paper: rloo)")
    aggregation: str = option("seq-mean-token-mean", " | ".join(AGGREGATIONS) + " (the paper: seq-mean-token-mean)")
    clip_low: float = option(0.2, "PPO clip epsilon (the paper: 0.2)")
    clip_high: float | None = option(None, "upper clip epsilon for clip-higher (default: = clip_low)")
    kl_coef: float = option(1e-3, "KL-to-reference coefficient (the paper: 1e-3)")
    kl_estimator: str = option("k1", "k1: in the reward, as the paper | k3: in the loss")
    whiten_advantages: bool = option(False, "whiten advantages over the batch as OpenRLHF does (paper code; off)")

    def __post_init__(self) -> None:
        check_choice("advantage", self.advantage, ADVANTAGE_ESTIMATORS)
        check_choice("aggregation", self.aggregation, AGGREGATIONS)
        check_choice("kl_estimator", self.kl_estimator, [name for name in KL_ESTIMATORS if name in ("k1", "k3")])
        if not 0.0 < self.clip_low < 1.0:
            raise ValueError(f"clip_low must be in (0, 1), got {self.clip_low}")
        check_positive(self, "clip_high")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")


@dataclass(frozen=True)
class LearnerConfig:
    num_learners: int = option(1, "DeepSpeed ranks (one GPU each on cuda)")
    zero_stage: int = option(2, "DeepSpeed ZeRO stage 0-3 (the paper: 2 for 1.5B, 3 for 7B)")
    lr: float = option(5e-6, "learning rate (the paper: 5e-6 for 1.5B, 2e-6 for 7B)")
    warmup_steps: int = option(6, "linear warmup optimizer steps, then constant (the paper: 6)")
    weight_decay: float = option(0.0, "AdamW weight decay (the paper: 0)")
    grad_clip: float = option(1.0, "gradient norm clip (the paper: 1.0)")
    train_batch_size: int = option(128, "samples per optimizer step, all ranks (the paper: 128: 2 steps per rollout)")
    micro_batch_size: int = option(1, "samples per forward/backward per rank (gradient accumulation fills the rest)")
    max_tokens_per_micro_batch: int | None = option(
        None, "sequence packing: each rank's micro-batches hold at most this many tokens (prompt + completion), "
              "padding-free (packing.py); micro_batch_size is then unused by the RL update. A longer sample gets "
              "a micro-batch of its own. With sdpa/eager attention a row's attention costs its length squared: keep "
              "it near twice the longest sample (docs/benchmarks.md). None: micro_batch_size samples each, "
              "right-padded")
    gradient_checkpointing: bool = option(False, "activation checkpointing (saves memory on long sequences)")
    offload_optimizer: bool = option(False, "ZeRO optimizer offload to CPU (the paper's 7B --adam_offload)")
    num_cpus_per_actor: float = option(1.0, "CPUs Ray reserves per learner/generator actor (fractions allowed on CPU)")

    def __post_init__(self) -> None:
        check_choice("zero_stage", self.zero_stage, (0, 1, 2, 3))
        check_positive(self, "num_learners", "lr", "train_batch_size", "micro_batch_size", "num_cpus_per_actor",
                       "max_tokens_per_micro_batch")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


# ---------------------------------------------------------------- what the jobs run


def _check_loggers(name: str, values: tuple[str, ...]) -> None:
    from ray_effreason.loggers import LOGGERS  # names only here; a missing package fails when the run opens them

    for value in values:
        check_choice(name, value, LOGGERS)


def _check_task(name: str, value: str) -> None:
    from ray_effreason.tasks import TASKS  # tasks import the verifiers; config stays importable without them

    check_choice(name, value, TASKS)


@dataclass(frozen=True)
class TrainConfig:
    task: str = option("numina_math", "training task (ray_effreason.tasks.TASKS)")
    task_path: str | None = option(None, "local JSONL for the task (default: the Hugging Face dataset)")
    output_dir: str = option("runs/train", "where metrics, rollouts and checkpoints go")
    max_prompts: int = option(3200, "training prompts used (the paper: the first 3,200)")
    steps: int | None = option(None, "rollout steps (default: max_prompts / prompts_per_step, the paper: 100)")
    save_every: int = option(10, "checkpoint every N rollout steps (the paper: 10)")
    keep_checkpoints: int = option(10, "most recent checkpoints kept (the paper: 10)")
    rollouts_logged: int = option(16, "rollouts per step written to rollouts/*.parquet")
    loggers: tuple[str, ...] = option(("console",), "where the per-step metrics also go, comma-separated: console, "
                                      "tensorboard, wandb, mlflow (loggers.py; console and metrics.jsonl always)",
                                      aliases=("logger",))
    drop_long_prompts: bool = option(False, "drop (and count) training prompts over max_prompt_tokens instead of "
                                            "failing before step 0 with their row ids")
    seed: int = option(42, "seed for data order, sampling and initialization (the paper: 42)")
    async_steps: int = option(0, "1: one-step-off pipelining, the generators sample step t+1 (with step t's "
                                 "weights) while the learner updates on step t; 0: sequential, as the paper")
    grade_while_generating: bool = option(True, "grade completions as the generation workers stream them back, "
                                                "overlapping grading with sampling (the same grades); off: grade "
                                                "the whole batch once it is generated")
    resume: bool = option(False, "continue from the last checkpoint in output_dir")
    max_restarts: int = option(2, "times a run that loses an actor (a learner rank; a generation worker or "
                                  "verifier out of Ray restarts) is restarted from its last checkpoint")
    run_name: str | None = option(None, "name shown in logs and metrics (default: alpha-<alpha>, the reward's "
                                        "name for another reward, controlled-alpha with a budget or floor)")
    model: ModelConfig = nested(ModelConfig)
    rollout: RolloutConfig = nested(RolloutConfig)
    reward: RewardConfig = nested(RewardConfig)
    controller: ControllerConfig = nested(ControllerConfig)
    loss: LossConfig = nested(LossConfig)
    learner: LearnerConfig = nested(LearnerConfig)

    def __post_init__(self) -> None:
        _check_task("task", self.task)
        object.__setattr__(self, "loggers", split_list(self.loggers))  # "a,b" from the command line
        _check_loggers("loggers", self.loggers)
        check_positive(self, "max_prompts", "save_every", "keep_checkpoints", "steps")
        if self.async_steps not in (0, 1):
            raise ValueError(f"async_steps must be 0 (sequential) or 1 (one step off), got {self.async_steps}")
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
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
        if self.run_name:
            return self.run_name
        if self.controller.enabled:
            return "controlled-alpha"
        return f"alpha-{self.reward.alpha:g}" if self.reward.reward == "arora_zanette" else self.reward.reward


def _eval_rollout() -> RolloutConfig:
    # PAPER.md §4: temperature 0.6, top_p 1.0, 32,768 new tokens; benchmark prompts are longer than training's.
    return RolloutConfig(temperature=0.6, max_new_tokens=32768, max_prompt_tokens=1024)


@dataclass(frozen=True)
class EvalConfig:
    models: tuple[str, ...] = option((), "models to evaluate, comma-separated: local paths or Hugging Face ids")
    names: tuple[str, ...] = option((), "the models' names in the records, comma-separated, one per model; none: "
                                        "a path's last component (more if two clash) or the hub id")
    tasks: tuple[str, ...] = option(("gsm8k", "math500", "aime2024"), "tasks, comma-separated (the paper's three)")
    task_path: str | None = option(None, "a local JSONL file (or directory) for the one task in --tasks")
    data_dir: str | None = option(None, "directory with one folder per task, as shared/data; none: the hub")
    output_dir: str = option("runs/eval", "where records.parquet, summary.json, summary.md and plots go")
    samples: str | int | dict[str, int] | None = option(
        None, "samples per problem: an int for every task, or task=n pairs like gsm8k=1,math500=3 overriding "
              "each task's own default (Task.eval_samples; the paper's for gsm8k, math500, aime2024)")
    limit: int | None = option(None, "evaluate only the first N problems of each task")
    force_answer: bool = option(False, "generation-cutoff baseline: continue truncated samples with "
                                       "'</think> Final answer: \\boxed{' and grade that")
    forced_answer_tokens: int = option(32, "token budget of a forced answer's continuation")
    prompt_budget: int | None = option(None, "state a budget of N tokens in every prompt (the prompted-budget "
                                             "baseline, L1 models); generation is not cut at it")
    budget_wording: str = option("tale", " | ".join(WORDINGS) + ": how --prompt-budget is stated "
                                 "(budget_prompts.py)")
    base_model: str | None = option(None, "model the relative metrics are computed against; none: the first")
    batch_size: int = option(100, "problems per generate call: records are appended after each")
    seed: int = option(0, "seed of every sample's seed (the paper sets none)")
    model: ModelConfig = nested(ModelConfig, hide=("model",))
    rollout: RolloutConfig = nested(_eval_rollout, hide=("samples_per_prompt", "prompts_per_step"))
    # Evaluation grades; it shapes no reward: only the verifier settings are its flags.
    reward: RewardConfig = nested(RewardConfig, hide=tuple(
        name for name in RewardConfig.__dataclass_fields__
        if name not in ("num_verifiers", "grade_timeout_s", "answer_extraction")))

    def __post_init__(self) -> None:
        from ray_effreason.tasks import parse_samples

        # Comma-separated strings come from the command line; the normalized value is what is logged.
        for name in ("models", "names", "tasks"):
            object.__setattr__(self, name, split_list(getattr(self, name)))
        if self.names and (len(self.names) != len(self.models) or len(set(self.names)) != len(self.names)):
            raise ValueError(f"names: give one distinct name per model; got {list(self.names)} for "
                             f"{len(self.models)} models")
        for task in self.tasks:
            _check_task("tasks", task)
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks: a task is listed twice: {list(self.tasks)}")
        if self.task_path is not None and len(self.tasks) != 1:
            raise ValueError(f"task_path needs exactly one task in tasks, got {list(self.tasks)}")
        parse_samples(self.samples, self.tasks)  # a bad value fails here; `samples_per_task` is the parsed one
        check_positive(self, "forced_answer_tokens", "batch_size", "limit", "prompt_budget")
        check_choice("budget_wording", self.budget_wording, WORDINGS)

    @property
    def samples_per_task(self) -> dict[str, int]:
        """Samples per problem of every task: its `Task.eval_samples`, overridden by `samples`."""
        from ray_effreason.tasks import parse_samples

        return parse_samples(self.samples, self.tasks)


def _sweep_eval() -> EvalConfig:
    return EvalConfig(tasks=())  # none given: the training task's own `eval_tasks`


@dataclass(frozen=True)
class SweepConfig:
    """A family from one base model: `train` applies to every alpha; `eval` (flags --eval-*) to the family."""

    alphas: tuple[float, ...] = option((0.0, 0.1, 0.2, 0.4, 0.8), "the family, comma-separated; 0 is the RL control")
    control_aggregations: tuple[str, ...] = option(
        (), "extra alpha-0 controls, one per loss aggregation, comma-separated (models alpha-0-AGG), e.g. "
            "seq-mean-token-mean,seq-mean-token-sum-norm: the paper's against the length-unbiased one (PAPER.md §9)")
    targets: tuple[float, ...] = option((), "a family by token budget instead: ratios of the base's mean tokens, "
                                            "e.g. 0.8,0.6,0.4 (models target-R; alpha set by the controller)")
    seeds: tuple[int, ...] = option((), "train every alpha once per seed (models alpha-A-seed-S) and report mean "
                                        "± std per alpha, e.g. 0,1,2; none: one run per alpha at --seed")
    forced_budgets: tuple[int, ...] = option((), "thinking budgets (tokens) at which the base is also evaluated "
                                                 "with its answer forced (thinking_pays.png), e.g. 16,32,64")
    job_attempts: int = option(2, "runs per family member: a failed training job is resubmitted with --resume")
    max_parallel_jobs: int | None = option(None, "training jobs running at once (none: all submitted together, Ray "
                                                 "queues what its resources cannot fit)")
    output_dir: str = option("runs/sweep", "where the runs (DIR/alpha-A), records and reports go")
    base_cache: str | None = option(None, "tiny reasoner cache (only with --model tiny); none: "
                                          "runs/tiny_reasoner in the repository")
    # The sweep sets each run's output dir, name, resume flag and alpha itself.
    train: TrainConfig = nested(TrainConfig, hide=("output_dir", "run_name", "resume", "alpha"))
    # The evaluation runs on the training run's actors settings (generators, verifiers, device, tokenizer).
    eval: EvalConfig = nested(_sweep_eval, prefix="eval_", hide=(
        "models", "names", "output_dir", "base_model", "tokenizer", "device", "num_generators", "generator_backend",
        "tensor_parallel_size", "gpu_memory_utilization", "generation_batch_size", "num_verifiers",
        "grade_timeout_s"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "alphas", tuple(float(alpha) for alpha in split_list(self.alphas)))
        if not self.alphas or any(not 0.0 <= alpha < 1.0 for alpha in self.alphas):
            raise ValueError(f"alphas must be in [0, 1), got {list(self.alphas)}")
        if len(set(self.alphas)) != len(self.alphas):
            raise ValueError(f"alphas: an alpha is listed twice: {list(self.alphas)}")
        object.__setattr__(self, "control_aggregations", split_list(self.control_aggregations))
        unknown = [name for name in self.control_aggregations if name not in AGGREGATIONS]
        if unknown or len(set(self.control_aggregations)) != len(self.control_aggregations):
            raise ValueError(f"control_aggregations: unknown or repeated {unknown or list(self.control_aggregations)}; "
                             f"valid: {list(AGGREGATIONS)}")
        object.__setattr__(self, "targets", tuple(float(target) for target in split_list(self.targets)))
        if any(not target > 0 for target in self.targets) or len(set(self.targets)) != len(self.targets):
            raise ValueError(f"targets must be distinct ratios > 0, got {list(self.targets)}")
        object.__setattr__(self, "seeds", tuple(int(seed) for seed in split_list(self.seeds)))
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: a seed is listed twice: {list(self.seeds)}")
        if self.seeds and self.targets:
            raise ValueError("seeds: give --seeds with an alpha family, not with --targets")
        object.__setattr__(self, "forced_budgets", tuple(int(budget) for budget in split_list(self.forced_budgets)))
        if any(budget < 1 for budget in self.forced_budgets):
            raise ValueError(f"forced_budgets must be token counts >= 1, got {list(self.forced_budgets)}")
        check_positive(self, "job_attempts", "max_parallel_jobs")
