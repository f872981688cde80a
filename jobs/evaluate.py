"""Evaluate models on the benchmarks (PAPER.md §4 protocol) and write tables and plots.

    python jobs/evaluate.py --models runs/sweep/alpha-0.2/final,runs/sweep/alpha-0/final \\
        --tasks gsm8k,math500,aime2024 --data-dir ../shared/data --output-dir runs/eval
    ray job submit -- python jobs/evaluate.py --models ... --tasks ...    # the same, on a cluster
    python jobs/evaluate.py --report runs/eval-a runs/eval-b --output-dir runs/eval-merged

A rerun with the same --output-dir resumes: samples already in records.parquet are not generated again.
"""

from __future__ import annotations

import ray

from ray_effreason.cli import config_parser, given_values, parse_config
from ray_effreason.config import EvalConfig
from ray_effreason.eval_runner import check_models, evaluate, load_tasks
from ray_effreason.presets import EVAL_PRESETS
from ray_effreason.report import report_only


def main(argv: list[str] | None = None) -> None:
    parser = config_parser(EvalConfig, __doc__, EVAL_PRESETS)
    parser.add_argument("--report", nargs="+", metavar="DIR", default=None,
                        help="only re-draw summary.json/summary.md/plots into --output-dir from the records of "
                             "these evaluation dirs (merged); generates nothing")
    given, extras = given_values(parser, EvalConfig, argv)
    if extras["report"]:
        output_dir = given.get("output_dir", EvalConfig.output_dir)
        try:
            report_only(extras["report"], output_dir, given.get("base_model"))
        except (ValueError, FileNotFoundError) as error:
            parser.error(str(error))
        print(f"report in {output_dir}")
        return
    config, _ = parse_config(parser, EvalConfig, argv, EVAL_PRESETS)
    try:  # bad flags and missing files fail here, before Ray or any actor starts
        check_models(config.models)
        load_tasks(config)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        parser.error(str(error))
    if not ray.is_initialized():
        ray.init()  # inside `ray job submit` this joins the job's cluster; otherwise it starts a local one
    evaluate(config)
    print(f"results in {config.output_dir}: records.parquet, summary.json, summary.md, pareto.png")


if __name__ == "__main__":
    main()
