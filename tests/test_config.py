"""The config tree and the command lines derived from it: round trips, strict names, presets (sub-second)."""

import dataclasses

import pytest

from ray_effreason.cli import config_parser, parse_config, to_arguments
from ray_effreason.config import EvalConfig, RolloutConfig, SamplingConfig, SweepConfig, TrainConfig
from ray_effreason.config_tree import flat_fields, from_dict, from_flat, leaves, to_dict
from ray_effreason.presets import SWEEP_PRESETS, TRAIN_PRESETS


@pytest.mark.parametrize("cls", [TrainConfig, EvalConfig, SweepConfig])
def test_flags_to_config_to_flags_round_trips(cls):
    changed = {TrainConfig: {"alpha": 0.4, "steps": 7, "whiten_advantages": True, "tokenizer": "tok"},
               EvalConfig: {"models": ("a", "b"), "tasks": ("gsm8k", "math500"), "samples": "math500=5",
                            "limit": 3, "temperature": 0.7},
               SweepConfig: {"alphas": (0.0, 0.3), "eval_limit": 5, "lr": 1e-4, "eval_tasks": ("synthetic",)}}[cls]
    config = from_flat(cls, changed)
    parser = config_parser(cls)
    rebuilt, _ = parse_config(parser, cls, to_arguments(config))
    assert rebuilt == config
    assert to_arguments(rebuilt) == to_arguments(config)


def test_a_flag_given_wins_over_the_preset_and_the_preset_over_the_default():
    parser = config_parser(TrainConfig, presets=TRAIN_PRESETS)
    config, _ = parse_config(parser, TrainConfig, ["--preset", "tiny", "--lr", "0.5"], TRAIN_PRESETS)
    assert config.learner.lr == 0.5  # given
    assert config.rollout.max_new_tokens == TRAIN_PRESETS["tiny"]["max_new_tokens"]  # preset
    assert config.loss.clip_low == 0.2  # default
    paper, _ = parse_config(parser, TrainConfig, [], TRAIN_PRESETS)
    assert paper == TrainConfig()


def test_unknown_key_is_an_error_with_a_close_match():
    with pytest.raises(ValueError, match=r"'kl_coeff' \(did you mean 'kl_coef'\?\).*valid names: .*kl_coef"):
        from_flat(TrainConfig, {"kl_coeff": 0.5})


def test_unknown_flag_is_a_parser_error_with_a_close_match(capsys):
    with pytest.raises(SystemExit):
        parse_config(config_parser(TrainConfig), TrainConfig, ["--kl-coeff", "0.5"])
    assert "--kl-coeff (did you mean --kl-coef?)" in capsys.readouterr().err


def test_hidden_leaves_are_not_flags_nor_keys():
    assert "samples_per_prompt" not in leaves(EvalConfig) and "alpha" not in leaves(EvalConfig)
    assert "alpha" not in leaves(SweepConfig) and "eval_models" not in leaves(SweepConfig)
    with pytest.raises(ValueError, match="unknown name"):
        from_flat(EvalConfig, {"alpha": 0.2})


def test_bad_value_names_the_field_and_lists_choices():
    with pytest.raises(ValueError, match=r"aggregation='mean' is not valid; choose one of \['seq-mean-token-mean'"):
        from_flat(TrainConfig, {"aggregation": "mean"})
    with pytest.raises(ValueError, match="unknown task|is not valid"):
        from_flat(TrainConfig, {"task": "imagenet"})
    with pytest.raises(ValueError, match="device='tpu'"):
        from_flat(EvalConfig, {"device": "tpu"})


def test_sampling_is_derived_from_the_rollout_config():
    rollout = RolloutConfig(temperature=0.6, top_p=0.9, max_new_tokens=100, max_prompt_tokens=50)
    assert rollout.sampling() == SamplingConfig(0.6, 0.9, 100, 50)
    assert rollout.sampling(max_new_tokens=8).max_new_tokens == 8


def test_eval_defaults_are_the_paper_protocol():
    config = EvalConfig()
    assert (config.rollout.temperature, config.rollout.max_new_tokens) == (0.6, 32768)
    assert config.samples_per_task == {"gsm8k": 1, "math500": 3, "aime2024": 10}


def test_presets_resolve_and_the_tiny_sweep_evaluates_300_problems():
    sweep = from_flat(SweepConfig, SWEEP_PRESETS["tiny"])
    assert sweep.eval.limit == 300 and sweep.train.task == "synthetic" and sweep.train.model.model == "tiny"
    assert from_flat(SweepConfig, SWEEP_PRESETS["paper"]).train == TrainConfig(
        output_dir=SweepConfig().train.output_dir)


def test_saved_config_round_trips_and_a_stray_key_names_the_file():
    config = from_flat(TrainConfig, {"alpha": 0.1, "steps": 3})
    assert from_dict(TrainConfig, to_dict(config)) == config
    data = to_dict(config)
    data["loss"]["kl_coeff"] = 1.0
    with pytest.raises(ValueError, match="kl_coeff.*config.json"):
        from_dict(TrainConfig, data, where="runs/x/config.json")


def test_every_knob_is_declared_once():
    # flat names are unique across the tree (leaves() raises otherwise), and the composed configs
    # hold the five concern types, not copies of their fields
    for cls in (TrainConfig, EvalConfig, SweepConfig):
        assert len(leaves(cls)) == len(flat_fields(cls()))
    own = {field.name for field in dataclasses.fields(EvalConfig)}
    assert not own & {field.name for field in dataclasses.fields(RolloutConfig)}


# PAPER.md §2, row by row: (what the table says, where it lives in TrainConfig, 1.5B, 7B)
PAPER_TABLE = [
    ("base model", "model.model",
     "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"),
    ("advantage estimator", "loss.advantage", "rloo", "rloo"),
    ("samples per prompt", "rollout.samples_per_prompt", 8, 8),
    ("prompts per rollout step", "rollout.prompts_per_step", 32, 32),
    ("optimizer batch", "learner.train_batch_size", 128, 128),
    ("micro batch per GPU", "learner.micro_batch_size", 1, 1),
    ("clip eps", "loss.clip_low", 0.2, 0.2),
    ("KL coefficient", "loss.kl_coef", 1e-3, 1e-3),
    ("KL in the reward (k1)", "loss.kl_estimator", "k1", "k1"),
    ("learning rate", "learner.lr", 5e-6, 2e-6),
    ("warmup steps", "learner.warmup_steps", 6, 6),
    ("weight decay", "learner.weight_decay", 0.0, 0.0),
    ("grad-norm clip", "learner.grad_clip", 1.0, 1.0),
    ("ZeRO stage", "learner.zero_stage", 2, 3),
    ("adam offload", "learner.offload_optimizer", False, True),
    ("gradient checkpointing", "learner.gradient_checkpointing", True, True),
    ("actor GPUs", "learner.num_learners", 2, 4),
    ("vLLM engines", "rollout.num_generators", 2, 4),
    ("vLLM tensor parallel", "rollout.tensor_parallel_size", 1, 1),
    ("temperature", "rollout.temperature", 1.0, 1.0),
    ("top_p", "rollout.top_p", 1.0, 1.0),
    ("generate max len", "rollout.max_new_tokens", 32000, 32000),
    ("prompt max len", "rollout.max_prompt_tokens", 512, 512),
    ("training prompt (no chat template)", "rollout.prompt_template", "paper", "paper"),
    ("advantage whitening (OpenRLHF)", "loss.whiten_advantages", True, True),
    ("loss aggregation", "loss.aggregation", "seq-mean-token-mean", "seq-mean-token-mean"),
    ("max samples", "max_prompts", 3200, 3200),
    ("data", "task", "numina_math", "numina_math"),
    ("save steps", "save_every", 10, 10),
    ("max checkpoints", "keep_checkpoints", 10, 10),
    ("seed", "seed", 42, 42),
]


@pytest.mark.parametrize("preset, column", [("paper-1.5b", 2), ("paper-7b", 3)])
def test_paper_presets_resolve_to_the_papers_hyperparameters(preset, column):
    config = from_flat(TrainConfig, TRAIN_PRESETS[preset])
    for row in PAPER_TABLE:
        value = config
        for part in row[1].split("."):
            value = getattr(value, part)
        assert value == row[column], row[0]
    assert config.num_steps == 100  # 3200 / 32 rollout steps, 200 optimizer steps
    sweep = from_flat(SweepConfig, SWEEP_PRESETS[preset])
    assert sweep.eval.tasks == ("gsm8k", "math500", "aime2024") and sweep.eval.rollout.max_new_tokens == 32768
    assert sweep.eval.samples_per_task == {"gsm8k": 1, "math500": 3, "aime2024": 10}
    assert sweep.eval.rollout.prompt_template == "chat" and sweep.eval.rollout.temperature == 0.6


def test_a_flag_alias_sets_the_same_knob():
    parser = config_parser(TrainConfig)
    config, _ = parse_config(parser, TrainConfig, ["--logger", "console,tensorboard"])
    assert config.loggers == ("console", "tensorboard")
