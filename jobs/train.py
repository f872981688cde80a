"""Train one model at one alpha with the Ray actor system.

    python jobs/train.py --model PATH_OR_HF_ID --task NAME [--task-path FILE] --alpha 0.2 --output-dir DIR
    ray job submit --runtime-env cluster/runtime_env.yaml -- python jobs/train.py ...

Defaults follow the paper (G = 8, 32 prompts per step, lr 5e-6, temperature 1.0, KL 1e-3, clip 0.2).
`--resume` continues from the last checkpoint in --output-dir with the same data order.
"""

import argparse
import json
import sys

import ray

from ray_effreason.config import TrainConfig, add_arguments, from_arguments, to_dict
from ray_effreason.driver import train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, TrainConfig)
    parser.add_argument("--ray-num-cpus", type=int, default=None,
                        help="only when this starts a local Ray instance: logical CPUs it advertises")
    arguments = parser.parse_args(argv)
    try:
        config = from_arguments(TrainConfig, arguments)
    except ValueError as error:
        parser.error(str(error))
    print("config:", json.dumps(to_dict(config)), flush=True)
    ray.init(num_cpus=arguments.ray_num_cpus) if arguments.ray_num_cpus else ray.init()
    final = train(config)
    print(f"final checkpoint: {final}\nmetrics: {config.output_dir}/metrics.jsonl", flush=True)


if __name__ == "__main__":
    sys.exit(main())
