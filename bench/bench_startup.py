"""Start-up (issue 15): seconds from `driver.train` to the first batch of samples, and to the whole system ready.

Each repeat is a fresh driver process, `python jobs/train.py --preset tiny --steps 1`, attached to a Ray head
this script starts first (its own temp dir and ports), so every actor is a new process that imports its
libraries, as a `ray job submit` run's are; Ray's own start is not counted. The numbers are the first step's
`startup/generators_ready_s` (every generation worker started, its model loaded), `startup/first_samples_s`
(the prompt check, the placement group, the actors, the first generation) and `startup/ready_s` (learners
and the weight-sync group up too), from the run's metrics.jsonl, and the driver process's wall time from
its start (Python, imports, the step, the checkpoint, the teardown).

    .venv/bin/python bench/bench_startup.py --model runs/tiny_reasoner [--repeats 3] [-- EXTRA TRAIN FLAGS]

The issue's target is under 8 s to the first generated token on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from ray_effreason import local_cluster  # noqa: E402

HEAD = {"dashboard_port": 8466, "gcs_port": 6491, "temp_dir": "/tmp/rayeff-bench-startup"}


def one_run(model: str, output_dir: Path, extra: list[str]) -> dict[str, float]:
    env = {**local_cluster.ray_environment(), "RAY_ADDRESS": f"127.0.0.1:{HEAD['gcs_port']}"}
    command = [sys.executable, "jobs/train.py", "--preset", "tiny", "--model", model, "--steps", "1",
               "--save-every", "1", "--output-dir", str(output_dir), *extra]
    began = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    first = json.loads((output_dir / "metrics.jsonl").read_text().splitlines()[0])
    return {"generators_ready_s": first["startup/generators_ready_s"],
            "first_samples_s": first["startup/first_samples_s"], "ready_s": first["startup/ready_s"],
            "driver_wall_s": wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the tiny reasoner (a local path)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more jobs/train.py flags, after --")
    args = parser.parse_args(argv)
    local_cluster.stop(HEAD["temp_dir"])
    local_cluster.start(HEAD["dashboard_port"], num_cpus=os.cpu_count(), gcs_port=HEAD["gcs_port"],
                        temp_dir=HEAD["temp_dir"])
    runs = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for repeat in range(args.repeats):
                runs.append(one_run(str(Path(args.model).resolve()), Path(scratch) / f"run-{repeat}", args.extra))
                print(json.dumps({"repeat": repeat, **{k: round(v, 2) for k, v in runs[-1].items()}}), flush=True)
    finally:
        local_cluster.stop(HEAD["temp_dir"])
    print("| measure | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | median |")
    print("|---|" + "---:|" * (len(runs) + 1))
    for key in runs[0]:
        values = [run[key] for run in runs]
        print(f"| {key} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {statistics.median(values):.1f} |")


if __name__ == "__main__":
    main()
