"""Evaluate models on the benchmarks (PAPER.md §4 protocol) and write tables and plots.

    python jobs/evaluate.py --models runs/sweep/alpha-0.2/final,runs/sweep/alpha-0/final \\
        --tasks gsm8k,math500,aime2024 --data-dir ../shared/data --output-dir runs/eval
    ray job submit -- python jobs/evaluate.py --models ... --tasks ...    # the same, on a cluster
    python jobs/evaluate.py --report runs/eval-a runs/eval-b --output-dir runs/eval-merged

A rerun with the same --output-dir resumes: samples already in records.parquet are not generated again.
"""

from __future__ import annotations

import argparse

import ray

from ray_effreason.config import add_arguments, from_arguments
from ray_effreason.eval_runner import EvalConfig, check_models, evaluate, load_tasks, report_only


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, EvalConfig)
    parser.add_argument("--report", nargs="+", metavar="DIR", default=None,
                        help="only re-draw summary.json/summary.md/plots into --output-dir from the records of "
                             "these evaluation dirs (merged); generates nothing")
    args = parser.parse_args(argv)
    if args.report:
        try:
            report_only(args.report, args.output_dir, args.base_model)
        except (ValueError, FileNotFoundError) as error:
            parser.error(str(error))
        print(f"report in {args.output_dir}")
        return
    try:  # bad flags and missing files fail here, before Ray or any actor starts
        config = from_arguments(EvalConfig, args)
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
