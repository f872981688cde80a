"""Grading speed on MATH500: ray_effreason.verifiers vs math-verify alone with its defaults.

Two passes over the 500 problems:
  correct: the reference `solution` text (its last box is the answer) graded against the gold;
  wrong:   a clearly different answer in a box (gold + 1 for integers, else another problem's answer).
Prints graded answers per second and how many were graded correct. math-verify alone parses the
whole completion (every box) and the gold wrapped in `$...$`, with its default signal timeouts
(main thread only). Ours starts its sympy worker before timing. Each (grader, pass) cell runs in a
fresh process so that neither grader profits from caches the other pass warmed; the fastest of
`--repeats` runs is reported (the dev machine is shared, so slower runs measure other people's load).

    .venv/bin/python bench/bench_grading.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from ray_effreason.sympy_pool import default_pool  # noqa: E402
from ray_effreason.tasks import load_task  # noqa: E402
from ray_effreason.verifiers import grade_math  # noqa: E402


def wrong_answer(answers: list[str], index: int) -> str:
    """gold + 1 for integers; otherwise the next non-integer answer written differently."""
    gold = answers[index]
    if gold.lstrip("-").isdigit():
        return str(int(gold) + 1)
    for offset in range(1, len(answers)):
        other = answers[(index + offset) % len(answers)]
        if not other.lstrip("-").isdigit() and other.replace(" ", "") != gold.replace(" ", ""):
            return other
    raise ValueError("no different answer")


def math_verify_alone(completion: str, gold: str) -> bool:
    from math_verify import parse, verify

    return verify(parse("$" + gold + "$"), parse(completion))


def run(grader, pairs: list[tuple[str, str]]) -> tuple[int, float]:
    start = time.perf_counter()
    correct = sum(bool(grader(completion, gold)) for completion, gold in pairs)
    return correct, time.perf_counter() - start


GRADERS = {"ray_effreason": grade_math, "math-verify alone": math_verify_alone}


def measure(data: Path, grader_name: str, pass_name: str) -> None:
    """One (grader, pass) cell; prints `answers correct seconds`. Run in a fresh process, so no cache is shared."""
    task = load_task("math500", data / "math500")
    answers = [example.gold for example in task.examples]
    pairs = {
        "correct": [(example.reference, example.gold) for example in task.examples],
        "wrong": [(f"The answer is $\\boxed{{{wrong_answer(answers, index)}}}$.", example.gold)
                  for index, example in enumerate(task.examples)],
    }[pass_name]
    if grader_name == "ray_effreason":
        default_pool().compare("1", "1")  # start the worker outside the timing
    correct, seconds = run(GRADERS[grader_name], pairs)
    print(len(pairs), correct, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = Path(os.environ.get("RAY_EFFREASON_DATA", REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=data,
                        help="benchmark data directory (holds math500/test.jsonl)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs per cell; the fastest is reported")
    parser.add_argument("--one", nargs=2, metavar=("GRADER", "PASS"), help="internal: measure one cell and exit")
    args = parser.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    if args.one:
        measure(args.data, *args.one)
        return

    print(f"{'grader':<18} {'pass':<8} {'answers':>7} {'graded correct':>14} {'seconds':>8} {'answers/s':>10}")
    for grader_name in GRADERS:
        for pass_name in ("correct", "wrong"):
            runs = []
            for _ in range(args.repeats):
                result = subprocess.run([sys.executable, __file__, "--data", str(args.data), "--one", grader_name,
                                         pass_name], capture_output=True, text=True, check=True)
                runs.append(result.stdout.split()[-3:])
            answers, correct, seconds = min(runs, key=lambda run: float(run[2]))
            print(f"{grader_name:<18} {pass_name:<8} {answers:>7} {correct:>14} {float(seconds):>8.2f} "
                  f"{int(answers) / float(seconds):>10.0f}")


if __name__ == "__main__":
    main()
