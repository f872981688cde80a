"""A training run's checkpoints on disk: `OUTPUT/checkpoints/step-N`, each written whole or not at all.

Step 9 of the driver (driver.py) writes them, `--resume` reads the newest complete one. A checkpoint holds the
learners' HF weights and DeepSpeed state (LearnerGroup.save_checkpoint) and `driver_state.json` (step, config,
controller state), written last: its presence marks a complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ray_effreason.config import TrainConfig
from ray_effreason.config_tree import to_dict


def checkpoint_step(path: Path) -> int:
    """N of a checkpoint directory step-N."""
    return int(path.name[len("step-"):])


def latest_checkpoint(output_dir: Path, folder: str = "checkpoints") -> Path | None:
    """The newest complete checkpoint in OUTPUT/folder (driver_state.json is written last)."""
    # step-N only: a save killed after writing step-N.tmp/driver_state.json but before the rename must not count
    complete = [path for path in (output_dir / folder).glob("step-*")
                if path.name[len("step-"):].isdigit() and (path / "driver_state.json").exists()]
    return max(complete, key=checkpoint_step, default=None)


# What a checkpoint directory must hold to resume from (save_checkpoint writes them; driver_state.json last).
CHECKPOINT_FILES = ("config.json", "driver_state.json", "deepspeed")


def check_checkpoint(path: Path) -> None:
    """An incomplete checkpoint (files deleted or never copied) is an error naming what is missing, before any
    actor starts, not a failure inside a learner or a generation worker."""
    missing = [name for name in CHECKPOINT_FILES if not (path / name).exists()]
    if not any(path.glob("*.safetensors")):
        missing.append("model*.safetensors")
    if missing:
        raise FileNotFoundError(f"checkpoint {path} is incomplete, missing {missing}: delete it to resume from "
                                f"the one before, or restore it")


def save_checkpoint(actors: Any, output_dir: Path, step: int, config: TrainConfig, tokenizer_path: str,
                    controller_state: dict[str, Any] | None = None, folder: str = "checkpoints",
                    keep: int | None = None) -> Path:
    """Write OUTPUT/folder/step-N.tmp, then rename: a run killed mid-save leaves the previous checkpoint intact.
    The newest `keep` (default --keep-checkpoints) are kept."""
    final = output_dir / folder / f"step-{step}"
    staging = final.with_name(final.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    actors.learners.save_checkpoint(str(staging.resolve()), tokenizer_path)
    (staging / "driver_state.json").write_text(json.dumps(
        {"step": step, "config": to_dict(config), "controller": controller_state}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    kept = sorted((path for path in final.parent.glob("step-*") if not path.name.endswith(".tmp")),
                  key=checkpoint_step)
    for old in kept[: -(keep or config.keep_checkpoints)]:
        shutil.rmtree(old, ignore_errors=True)
    return final
