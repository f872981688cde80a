"""Evaluate models on the benchmarks (PAPER.md §4 protocol) and write tables and plots.

    python jobs/evaluate.py --models runs/sweep/alpha-0.2/final,runs/sweep/alpha-0/final \\
        --tasks gsm8k,math500,aime2024 --data-dir ../shared/data --output-dir runs/eval
    ray job submit -- python jobs/evaluate.py --models ... --tasks ...    # the same, on a cluster
    python jobs/evaluate.py --report runs/eval-a runs/eval-b --output-dir runs/eval-merged
    python jobs/evaluate.py --select 0.02 --report runs/sweep/eval   # the cheapest model within 2 points, 95%

A rerun with the same --output-dir resumes: samples already in records.parquet are not generated again. It must
keep the generation settings (generation.json) and each name's weights (weights.json): a model trained again
under the same name is refused rather than reported with the old model's records.
"""

from __future__ import annotations

import ray

from ray_effreason.cli import config_parser, given_values, parse_config
from ray_effreason.config import EvalConfig
from ray_effreason.eval_inputs import check_models, load_tasks
from ray_effreason.eval_runner import evaluate
from ray_effreason.presets import EVAL_PRESETS
from ray_effreason.report import report_only


def main(argv: list[str] | None = None) -> None:
    parser = config_parser(EvalConfig, __doc__, EVAL_PRESETS)
    parser.add_argument("--report", nargs="+", metavar="DIR", default=None,
                        help="only re-draw summary.json/summary.md/plots into --output-dir from the records of "
                             "these evaluation dirs (merged); generates nothing")
    parser.add_argument("--select", type=float, metavar="EPSILON", default=None,
                        help="only pick a model from the records of --report dirs (default: --output-dir): the "
                             "cheapest whose accuracy is, with 95%% confidence, at most EPSILON (e.g. 0.02) below "
                             "--base-model's (paired one-sided bound over the same problems); generates nothing")
    given, extras = given_values(parser, EvalConfig, argv)
    if extras["select"] is not None:
        try:
            select(extras["report"] or [given.get("output_dir", EvalConfig.output_dir)], given.get("base_model"),
                   extras["select"])
        except (ValueError, FileNotFoundError) as error:
            parser.error(str(error))
        return
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


def select(dirs: list[str], base_model: str | None, epsilon: float) -> None:
    """Print the choice and its bound; write selection.json beside the first dir's records."""
    import json
    from pathlib import Path

    from ray_effreason.evaluation import read_records, read_summary
    from ray_effreason.selection import describe, select_model

    sources = [Path(d) / "records.parquet" if (Path(d) / "records.parquet").exists() else Path(d) for d in dirs]
    rows = read_records(sources).to_pylist()
    if base_model is None:
        summaries = [Path(d) for d in dirs if (Path(d) / "summary.json").is_file()]
        base_model = read_summary(summaries[0]).get("base_model") if summaries else None
    if base_model is None:
        raise ValueError("--select: give --base-model (no summary.json names one)")
    selection = select_model(rows, base_model, epsilon)
    print(describe(selection))
    path = Path(dirs[0]) / "selection.json"
    path.write_text(json.dumps(selection, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
