"""The accuracy floor's rollback, driver side: the last weights whose probe held the floor, kept on disk, and
brought back when a probe reads more than --floor-tolerance under it.

The controller decides (AlphaController.floor_reading, roll_back); this moves the weights. With a floor
(--accuracy-floor or --accuracy-drop), a probe (--controller-probe-prompts) and --floor-rollback (the default),
each step whose probe holds the floor snapshots the learners before its update: DeepSpeed state and HF weights,
the checkpoint format of run_checkpoints.py, in OUTPUT/floor/step-N with the controller's state of then (one
kept). A probe reading under the floor - tolerance restores the snapshot into the learners (the driver then drops
that step's batch, sampled by the weights that broke the floor, and syncs the restored weights to the generation
workers). After the last update one more probe reads the final weights, which no step's probe has seen: if they
break the floor, the run's final model is the snapshot.

Why (docs/controller.md): on the built-in task accuracy falls through a floor within a few steps once the
policy starts boxing the hint, and alpha 0 does not bring the thinking back within a run; a floor can only be
held by not keeping the step that broke it. A snapshot is a write of the policy and its optimizer state each
step the floor holds (counted in the step's time/update); a resumed run finds its snapshot in OUTPUT/floor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray_effreason.alpha_controller import AlphaController
from ray_effreason.config import TrainConfig
from ray_effreason.run_checkpoints import checkpoint_step, latest_checkpoint, save_checkpoint

FOLDER = "floor"


class FloorGuard:
    """`check(step, accuracy)` before each update; `final(checkpoint, accuracy)` after the last."""

    def __init__(self, actors: Any, output_dir: Path, config: TrainConfig, tokenizer_path: str,
                 controller: AlphaController, start_step: int):
        self.actors, self.output_dir, self.config = actors, output_dir, config
        self.tokenizer_path, self.controller = tokenizer_path, controller
        # a resumed run's, unless it is newer than the checkpoint resumed from (the steps after are run again)
        snapshot = latest_checkpoint(output_dir, FOLDER)
        self.snapshot = snapshot if snapshot and checkpoint_step(snapshot) <= start_step else None

    @staticmethod
    def wanted(config: TrainConfig) -> bool:
        controller = config.controller
        return (controller.floor_rollback and controller.controller_probe_prompts > 0
                and (controller.accuracy_floor is not None or controller.accuracy_drop is not None))

    def check(self, step: int, accuracy: float) -> int | None:
        """The probe's `accuracy` of the weights this step updates (after `step` updates): a snapshot if they hold
        the floor; the snapshot back in the learners if they break it, and its step returned (None otherwise)."""
        reading = self.controller.floor_reading(accuracy)
        if reading == "holds":
            self.snapshot = save_checkpoint(self.actors, self.output_dir, step, self.config, self.tokenizer_path,
                                            self.controller.state_dict(), folder=FOLDER, keep=1)
        elif reading == "breaks" and self.snapshot is not None:
            self.actors.learners.load_checkpoint(str(self.snapshot))
            saved = json.loads((self.snapshot / "driver_state.json").read_text())
            self.controller.roll_back(saved["controller"])
            return saved["step"]
        return None

    def final(self, checkpoint: Path, accuracy: float) -> Path:
        """The run's final model: `checkpoint` unless the probe's `accuracy` of it breaks the floor (the snapshot)."""
        if self.controller.floor_reading(accuracy) == "breaks" and self.snapshot is not None:
            return self.snapshot
        return checkpoint
