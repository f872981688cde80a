"""The alpha sweep: a family of efficient reasoners from one base model, trained as parallel Ray jobs.

    python jobs/sweep_alpha.py                      # the tiny preset: laptop, CPU, minutes
    ray job submit -- python jobs/sweep_alpha.py    # the same, on a running cluster (see `make sweep`)
    python jobs/sweep_alpha.py --model deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B --task numina_math \
        --alphas 0.05,0.1,0.2,0.4 --num-generators 2 --num-learners 2     # the paper's experiment

Every training flag of jobs/train.py is accepted and applies to every alpha; --eval-* flags set the
family's evaluation (EvalConfig). Values given on the command line win over the preset (presets.py: tiny
without --model, the paper's defaults with it). --output-dir is the sweep's directory (default
runs/sweep); each alpha's run goes to DIR/alpha-A.
"""

import json
import sys

import ray

from ray_effreason.cli import config_parser, given_values, parse_config
from ray_effreason.config import SweepConfig
from ray_effreason.presets import SWEEP_PRESETS
from ray_effreason.sweep import run_sweep


def main(argv: list[str] | None = None) -> None:
    parser = config_parser(SweepConfig, __doc__, SWEEP_PRESETS)
    given, extras = given_values(parser, SweepConfig, argv)
    default = "tiny" if given.get("model", "tiny") == "tiny" else "paper"  # no --model: the laptop run
    config, _ = parse_config(parser, SweepConfig, argv, SWEEP_PRESETS, default_preset=default)
    print("sweep:", json.dumps({"alphas": config.alphas, "output_dir": config.output_dir}), flush=True)
    context = ray.init()
    run_sweep(config, context.dashboard_url)


if __name__ == "__main__":
    sys.exit(main())
