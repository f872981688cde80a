"""Train one model at one alpha with the Ray actor system.

    python jobs/train.py --model PATH_OR_HF_ID --task NAME [--task-path FILE] --alpha 0.2 --output-dir DIR
    ray job submit --runtime-env cluster/runtime_env.yaml -- python jobs/train.py ...

Defaults follow the paper (G = 8, 32 prompts per step, lr 5e-6, temperature 1.0, KL 1e-3, clip 0.2).
`--resume` continues from the last checkpoint in --output-dir with the same data order. `--preset`
(presets.py) fills every flag not given.
"""

import json
import sys

import ray

from ray_effreason.cli import config_parser, parse_config
from ray_effreason.config import TrainConfig
from ray_effreason.config_tree import to_dict
from ray_effreason.driver import train
from ray_effreason.presets import TRAIN_PRESETS


def main(argv: list[str] | None = None) -> None:
    parser = config_parser(TrainConfig, __doc__, TRAIN_PRESETS)
    parser.add_argument("--ray-num-cpus", type=int, default=None,
                        help="only when this starts a local Ray instance: logical CPUs it advertises")
    config, extras = parse_config(parser, TrainConfig, argv, TRAIN_PRESETS)
    print("config:", json.dumps(to_dict(config)), flush=True)
    ray.init(num_cpus=extras["ray_num_cpus"]) if extras["ray_num_cpus"] else ray.init()
    final = train(config)
    print(f"final checkpoint: {final}\nmetrics: {config.output_dir}/metrics.jsonl", flush=True)


if __name__ == "__main__":
    sys.exit(main())
