"""The accuracy floor's rollback on real actors (floor_guard.py): a tiny model that answers 2 in 3 of its level-1
problems, a learning rate that wrecks it in one update, a floor its probe holds before and breaks after."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ray_effreason.driver import train

pytestmark = pytest.mark.ray  # starts a Ray cluster


def test_a_probe_under_the_floor_brings_back_the_weights_that_held_it(ray_local, level_one_reasoner,
                                                                      cpu_train_config, tmp_path):
    model_dir, data = level_one_reasoner  # conftest.py: about 2 in 3 of its samples are correct
    train(cpu_train_config(model_dir, tmp_path, task_path=str(data), max_prompts=24, steps=3, save_every=3, seed=0,
                           samples_per_prompt=4, prompts_per_step=4, max_new_tokens=96, train_batch_size=16,
                           micro_batch_size=8, lr=0.05, accuracy_floor=0.2, controller_probe_prompts=8,
                           initial_alpha=0.4, num_cpus_per_actor=0.5))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    accuracy = [row["probe/accuracy"] for row in rows]
    # step 1: the base holds the floor (snapshot), its update wrecks it; step 2: the probe breaks the floor, the
    # learners go back to the base and the batch is dropped; step 3: the base again (snapshot), wrecked again
    assert accuracy[0] >= 0.2 and accuracy[1] < 0.18 and accuracy[2] >= 0.2, accuracy
    assert [row.get("controller/restored_step") for row in rows] == [None, 0.0, None]
    assert [row["controller/rollbacks"] for row in rows] == [0.0, 1.0, 1.0]
    assert "optimizer_steps" in rows[0] and "optimizer_steps" not in rows[1]  # the broken weights' batch: no update
    assert rows[1]["controller/alpha_ceiling"] == pytest.approx(0.5 * rows[0]["alpha"])  # rollback_backoff 0.5
    assert rows[0]["alpha"] == 0.4 and rows[2]["alpha"] == pytest.approx(0.2)  # capped at 0.5 x the alpha that left
    # the final weights (wrecked by step 3's update) break the floor too: the final model is step 3's snapshot,
    # which holds the base's weights bit for bit (DeepSpeed's state restored, then saved again)
    final = Path((tmp_path / "final_checkpoint").read_text().strip())
    assert final == (tmp_path / "floor" / "step-2").resolve()
    assert sorted(path.name for path in (tmp_path / "floor").iterdir()) == ["step-2"]  # one snapshot kept
    base, restored = load_file(Path(model_dir) / "model.safetensors"), load_file(final / "model.safetensors")
    assert base.keys() == restored.keys() and all(base[name].equal(restored[name]) for name in base)
    wrecked = load_file(tmp_path / "checkpoints" / "step-3" / "model.safetensors")
    assert any(not wrecked[name].equal(base[name]) for name in base)
