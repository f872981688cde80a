"""Issue 12's comparison: every method on the same base model, trained as parallel Ray jobs, one evaluation.

    python jobs/compare.py                          # the tiny preset: laptop, CPU
    ray job submit -- python jobs/compare.py --methods az,cutoff,kimi   # on a running cluster (`make compare`)
    python jobs/compare.py --model HF_ID --task numina_math ...        # the paper's settings, a GPU cluster

--methods (default: all, ray_effreason.compare.METHODS): az, cutoff, sft_shortest, dpo, prompt_budget, kimi,
dapo_overlong, cosine, dler_truncation, l1_max, pass_rate. Each sweeps its own knob (compare.METHODS); every
training flag of jobs/train.py applies to every RL model and to the SFT / DPO jobs (jobs/train_offline.py, with
--epochs), --eval-* flags to the evaluation. Rerun to resume:
a trained model is skipped, the evaluation continues its records. Results: DIR/comparison.{json,md,png}.
"""

import json
import sys

import ray

from ray_effreason.cli import config_parser, given_values, parse_config
from ray_effreason.compare import CompareConfig, run_comparison
from ray_effreason.presets import COMPARE_PRESETS as PRESETS


def main(argv: list[str] | None = None) -> None:
    parser = config_parser(CompareConfig, __doc__, PRESETS)
    given, _ = given_values(parser, CompareConfig, argv)
    default = "tiny" if given.get("model", "tiny") == "tiny" else "paper"  # no --model: the laptop run
    config, _ = parse_config(parser, CompareConfig, argv, PRESETS, default_preset=default)
    print("compare:", json.dumps({"methods": config.methods, "output_dir": config.sweep.output_dir}), flush=True)
    context = ray.init()
    run_comparison(config, context.dashboard_url)


if __name__ == "__main__":
    sys.exit(main())
