"""Grading while generating (issue 15): a batch's time from submission to its last grade, streamed vs after.

Real parts, as the driver's steps 2-3 use them: `--workers` transformers GenerationWorkers (the tiny reasoner,
one thread each, `generate()` calls of `--piece` sequences) sample `--samples` completions of synthetic test
prompts at temperature 1.0; a VerifierPool of `--verifiers` actors grades them through a GradingStream,

- **after**: the whole batch once it is in (`--no-grade-while-generating`);
- **streamed**: each worker's pieces as they come back (the default).

The grading load is MATH's slow path, not the synthetic task's (which grades in milliseconds): each arriving
completion is paired with a wrong boxed answer to a MATH500 problem whose gold is not an integer, graded by the
MATH500 task (`grade_math`: sympy in a worker process), as a policy's wrong answers on MATH are. Fresh verifier
actors for every run (no warm caches), started before the clock; modes alternate, `--repeats` runs each.

    .venv/bin/python bench/bench_grading_stream.py --model runs/tiny_reasoner [--data ../shared/data]

On a CPU-only machine grading and generation share the cores, so overlap can only hide grading where a core
would otherwise wait; on a GPU node generation runs on the GPUs and grading on the idle host CPUs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import ray

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from bench_grading import wrong_answer  # noqa: E402

from ray_effreason.actors.generator import GenerationWorker, SampleRequest  # noqa: E402
from ray_effreason.actors.generator_group import GeneratorGroup  # noqa: E402
from ray_effreason.actors.verifier import GradingStream, VerifierPool  # noqa: E402
from ray_effreason.config import SamplingConfig  # noqa: E402
from ray_effreason.tasks import load_task  # noqa: E402
from ray_effreason.tasks.synthetic import SyntheticArithmetic  # noqa: E402


def one_run(group: GeneratorGroup, task, texts: list[str], examples: list, requests: list[SampleRequest],
            sampling: SamplingConfig, verifiers: int, streamed: bool) -> dict[str, float]:
    pool = VerifierPool(task, verifiers, num_cpus=0.25)
    ray.get([worker.__ray_ready__.remote() for worker in pool.workers])
    time.sleep(3)  # each verifier starts its sympy worker in a thread at start-up: let it finish
    stream = GradingStream(pool)

    def add(piece) -> None:  # a completion's grading load: the MATH answer of its request
        stream.add([c.request_id for c in piece], [texts[c.request_id] for c in piece],
                   [examples[c.request_id] for c in piece], [c.finish_reason for c in piece])

    start = time.perf_counter()
    completions = group.submit(requests, sampling).result(on_chunk=add if streamed else None)
    generated = time.perf_counter() - start
    if not streamed:
        add(completions)
    grades = stream.result()
    total = time.perf_counter() - start
    for worker in pool.workers:
        ray.kill(worker)
    assert len(grades) == len(requests) and not any(grade.correct for grade in grades.values())
    return {"total_s": total, "generate_s": generated, "grade_tail_s": total - generated,
            "grading_busy_s": stream.busy_s, "grade_calls": len(stream.call_starts),
            "tokens": sum(c.num_tokens for c in completions)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/tiny_reasoner")
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--verifiers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--piece", type=int, default=16, help="generation_batch_size: sequences per generate()")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="runs/bench/grading_stream.json")
    args = parser.parse_args()

    ray.init(address="local", num_cpus=8, include_dashboard=False,
             runtime_env={"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}})
    remote = ray.remote(GenerationWorker).options(num_cpus=1)
    workers = [remote.remote(args.model, None, "transformers", "cpu", index, 1, generation_batch_size=args.piece)
               for index in range(args.workers)]
    group = GeneratorGroup(workers)
    prompts = SyntheticArithmetic(split="test", num_examples=args.samples).examples
    requests = [SampleRequest(index, index, 0, example.prompt, seed=index) for index, example in enumerate(prompts)]
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens, max_prompt_tokens=128)
    group.generate(requests[:8], sampling)  # warm-up: model loaded, first generate() done

    math = load_task("math500", str(Path(args.data) / "math500"))
    golds = [example.gold for example in math.examples]
    slow = [index for index, gold in enumerate(golds) if not gold.lstrip("-").isdigit()]  # sympy's path
    examples = [math.examples[slow[index % len(slow)]] for index in range(args.samples)]
    texts = [f"The answer is $\\boxed{{{wrong_answer(golds, slow[index % len(slow)])}}}$."
             for index in range(args.samples)]

    runs: dict[str, list[dict]] = {"after": [], "streamed": []}
    for repeat in range(args.repeats):
        for mode in ("after", "streamed") if repeat % 2 == 0 else ("streamed", "after"):
            result = one_run(group, math, texts, examples, requests, sampling, args.verifiers, mode == "streamed")
            runs[mode].append(result)
            print(mode, json.dumps({key: round(value, 3) for key, value in result.items()}), flush=True)
    print("\n| mode | batch submitted -> last grade (s) | generation (s) | grading after generation (s) "
          "| grading busy (s) | grade calls |\n|---|---|---|---|---|---|")
    for mode, results in runs.items():
        cell = {key: statistics.mean(result[key] for result in results) for key in results[0]}
        print(f"| {mode} | {cell['total_s']:.2f} | {cell['generate_s']:.2f} | {cell['grade_tail_s']:.2f} "
              f"| {cell['grading_busy_s']:.2f} | {cell['grade_calls']:.1f} |")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
