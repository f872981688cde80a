"""The offline baselines' pure parts (offline_methods.py): which completion SFT keeps, which pair DPO gets,
how a pass fills optimizer steps; the job's config as compare.py builds and submits it."""

import numpy as np
import pytest

from ray_effreason.cli import config_parser, parse_config, to_arguments
from ray_effreason.compare import CompareConfig, method_members, offline_config
from ray_effreason.config_tree import from_flat
from ray_effreason.offline_methods import (
    OFFLINE_METHODS,
    OfflineTrainConfig,
    epoch_order,
    preference_pairs,
    shortest_correct,
)

# ---------------------------------------------------------------- SFT: the shortest correct


def test_shortest_correct_ignores_shorter_wrong_samples():
    assert shortest_correct([[True, False, True]], [[30, 2, 12]]).tolist() == [2]


def test_shortest_correct_all_wrong_keeps_nothing():
    assert shortest_correct([[False, False], [True, False]], [[1, 2], [5, 1]]).tolist() == [-1, 0]


def test_shortest_correct_tie_takes_the_lowest_sample_index():
    assert shortest_correct([[False, True, True, True]], [[1, 7, 7, 9]]).tolist() == [1]


def test_shortest_correct_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        shortest_correct([[True, False]], [[1, 2, 3]])


# ---------------------------------------------------------------- DPO: the pairs


def test_pair_is_shortest_correct_over_longest_correct():
    # a wrong sample longer than every correct one is not the rejected one when two correct ones differ
    assert preference_pairs([[True, True, True, False]], [[20, 8, 14, 99]]).tolist() == [[1, 0]]


def test_pair_all_wrong_has_none():
    assert preference_pairs([[False, False, False]], [[3, 1, 2]]).tolist() == [[-1, -1]]


def test_pair_one_correct_is_rejected_against_the_longest_wrong():
    assert preference_pairs([[False, True, False, False]], [[5, 9, 31, 7]]).tolist() == [[1, 2]]


def test_pair_correct_of_one_length_falls_back_to_a_wrong_one():
    assert preference_pairs([[True, True, False]], [[6, 6, 4]]).tolist() == [[0, 2]]


def test_pair_all_correct_of_one_length_has_none():
    assert preference_pairs([[True, True, True]], [[6, 6, 6]]).tolist() == [[-1, -1]]


def test_pair_ties_take_the_lowest_sample_index():
    # shortest: 3 at index 1 (and 3); longest correct: 9 at index 0 (and 2)
    assert preference_pairs([[True, True, True, True]], [[9, 3, 9, 3]]).tolist() == [[1, 0]]


def test_pairs_are_per_prompt_never_across_prompts():
    pairs = preference_pairs([[True, False], [False, False], [True, True]], [[4, 50], [1, 1], [10, 2]])
    assert pairs.tolist() == [[0, 1], [-1, -1], [1, 0]]


# ---------------------------------------------------------------- a pass over the kept items


@pytest.mark.parametrize("items, batch", [(1, 4), (5, 4), (8, 4), (9, 16)])
def test_epoch_fills_whole_optimizer_steps_and_keeps_every_item(items, batch):
    order = epoch_order(items, batch, (0, 1))
    assert len(order) % batch == 0 and len(order) >= items and set(order.tolist()) == set(range(items))
    assert np.bincount(order).max() - np.bincount(order).min() <= 1  # repeats spread evenly (cyclic)


def test_epoch_order_is_a_function_of_its_seed():
    assert epoch_order(10, 4, (0, 0)).tolist() == epoch_order(10, 4, (0, 0)).tolist()
    assert epoch_order(10, 4, (0, 0)).tolist() != epoch_order(10, 4, (0, 1)).tolist()


# ---------------------------------------------------------------- the job's config


def test_unknown_offline_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="sft_shortest, dpo"):
        OfflineTrainConfig(method="ppo")
    assert list(OFFLINE_METHODS) == ["sft_shortest", "dpo"]


@pytest.mark.parametrize("name", ["sft_shortest", "dpo"])
def test_compare_members_are_offline_jobs_whose_flags_rebuild_them(name, tmp_path):
    from jobs.train_offline import PRESETS  # the job's own parser
    from jobs.train_offline import __doc__ as doc

    compare = from_flat(CompareConfig, {"samples_per_prompt": 8, "prompts_per_step": 16, "train_batch_size": 64,
                                        "max_new_tokens": 256, "epochs": 2})
    for member in method_members(name, 256):
        config = offline_config(compare, member, "/models/base", tmp_path)
        assert config.method == name and config.train.run_name == member.name
        assert config.train.model.model == "/models/base" and config.offline.epochs == 2
        knob = {"sft_shortest": config.train.rollout.samples_per_prompt, "dpo": config.offline.dpo_beta}[name]
        assert knob == member.labels["value"]
        parsed, _ = parse_config(config_parser(OfflineTrainConfig, doc, PRESETS), OfflineTrainConfig,
                                 to_arguments(config), PRESETS)
        assert parsed == config
