"""Train one offline baseline of issue 12 on the base model's own samples: SFT on the shortest correct, or DPO.

    python jobs/train_offline.py --method sft_shortest --model PATH_OR_HF_ID --task NAME --output-dir DIR
    ray job submit -- python jobs/train_offline.py --method dpo --dpo-beta 0.1 ...   # as compare.py submits it

G samples (--samples-per-prompt) of each prompt the RL members see (--steps x --prompts-per-step, --seed), graded;
then --epochs passes of the learner group (--lr, --train-batch-size, ...). The pipeline and its choices:
ray_effreason/offline_methods.py. Results: DIR/model (HF format), DIR/final_checkpoint, DIR/metrics.json.
`--preset` (presets.py, the training presets) fills every flag not given.
"""

import json
import sys

import ray

from ray_effreason.cli import config_parser, parse_config
from ray_effreason.config_tree import leaves, to_dict
from ray_effreason.offline_methods import OfflineTrainConfig, train_offline
from ray_effreason.presets import TRAIN_PRESETS

# The training presets, less the RL loop's own knobs (hidden in OfflineTrainConfig).
PRESETS = {name: {key: value for key, value in values.items() if key in leaves(OfflineTrainConfig)}
           for name, values in TRAIN_PRESETS.items()}


def main(argv: list[str] | None = None) -> None:
    parser = config_parser(OfflineTrainConfig, __doc__, PRESETS)
    config, _ = parse_config(parser, OfflineTrainConfig, argv, PRESETS)
    print("config:", json.dumps(to_dict(config)), flush=True)
    ray.init()
    final = train_offline(config)
    print(f"final model: {final}\nmetrics: {config.train.output_dir}/metrics.json", flush=True)


if __name__ == "__main__":
    sys.exit(main())
