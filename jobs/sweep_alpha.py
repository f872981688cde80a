"""The alpha sweep: a family of efficient reasoners from one base model, trained as parallel Ray jobs.

    python jobs/sweep_alpha.py                      # the tiny preset: laptop, CPU, minutes
    ray job submit -- python jobs/sweep_alpha.py    # the same, on a running cluster (see `make sweep`)
    python jobs/sweep_alpha.py --model deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B --task numina_math \
        --alphas 0.05,0.1,0.2,0.4 --num-generators 2 --num-learners 2     # the paper's experiment

Every training flag of jobs/train.py is accepted and applies to every alpha; values given on the
command line win over the preset (the tiny preset without --model, the paper's defaults with it).
--output-dir is the sweep's directory (default runs/sweep); each alpha's run goes to DIR/alpha-A.
"""

import argparse
import json
import sys

import ray

from ray_effreason.config import TrainConfig, add_arguments, flat_fields
from ray_effreason.sweep import SweepConfig, config_from_flags, run_sweep


def parse_alphas(text: str) -> tuple[float, ...]:
    try:
        alphas = tuple(float(value) for value in text.split(",") if value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--alphas takes comma-separated numbers, got {text!r}") from None
    if not alphas or any(not 0 <= alpha < 1 for alpha in alphas):
        raise argparse.ArgumentTypeError(f"--alphas must be in [0, 1), got {text!r}")
    return alphas


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--alphas", type=parse_alphas, default=SweepConfig.alphas,
                       help="comma-separated alphas (default: 0,0.1,0.2,0.4; 0 is the RL control)")
    sweep.add_argument("--preset", choices=["tiny", "paper"], default=None,
                       help="training defaults: tiny (laptop) or paper (default: tiny without --model, else paper)")
    sweep.add_argument("--base-cache", default="runs/tiny_reasoner", help="tiny reasoner cache (without --model)")
    sweep.add_argument("--eval-task", default=None, help="task to evaluate on (default: the training task)")
    sweep.add_argument("--eval-task-path", default=None, help="local JSONL for the eval task")
    sweep.add_argument("--eval-limit", type=int, default=None, help="first N test problems (tiny preset: 300)")
    sweep.add_argument("--eval-max-new-tokens", type=int, default=None, help="eval budget (default: training's)")
    # Training flags: suppressed defaults, so we know exactly which ones the user gave.
    add_arguments(parser, TrainConfig, defaults={name: argparse.SUPPRESS for name in flat_fields(TrainConfig())})
    arguments = vars(parser.parse_args(argv))
    sweep_keys = ("alphas", "preset", "base_cache", "eval_task", "eval_task_path", "eval_limit",
                  "eval_max_new_tokens")
    given = {key: value for key, value in arguments.items() if key not in sweep_keys}
    try:
        train = config_from_flags(given, arguments["preset"])
    except ValueError as error:
        parser.error(str(error))
    config = SweepConfig(alphas=arguments["alphas"], output_dir=train.output_dir,
                         base_cache=arguments["base_cache"], eval_task=arguments["eval_task"],
                         eval_task_path=arguments["eval_task_path"], eval_limit=arguments["eval_limit"],
                         eval_max_new_tokens=arguments["eval_max_new_tokens"], train=train)
    print("sweep:", json.dumps({"alphas": config.alphas, "output_dir": config.output_dir}), flush=True)
    context = ray.init()
    run_sweep(config, context.dashboard_url)


if __name__ == "__main__":
    sys.exit(main())
