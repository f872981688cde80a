"""GPU benchmarks (issue 15): our vLLM worker against bare vLLM, weight-sync seconds, end-to-end tokens/s.

    make bench-gpu                                     # = .venv/bin/python bench/bench_gpu.py
    .venv/bin/python bench/bench_gpu.py [--model HF_ID_OR_PATH] [--parts generation,sync,e2e]
    .venv/bin/python bench/bench_gpu.py --device cpu --model untrained-tiny ...   # CPU smoke test (docs/benchmarks.md)

The model (default deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B) must be a local path or already in the local
Hugging Face cache (`huggingface-cli download ID` on a machine that can reach the hub): nothing is
downloaded, every process runs with HF_HUB_OFFLINE=1. `untrained-tiny` builds the tiny reasoner's shape with
random weights (tests/conftest.py `tiny_model`) under --output-dir, for the CPU smoke test. Each measurement
runs in fresh processes (vLLM engines and Ray instances of their own); tables are printed as markdown and
everything goes to OUTPUT_DIR/results.json.

1. generation: the first --prompts MATH500 (or GSM8K test) problems that fit --max-prompt-tokens, rendered with
   the model's chat template (tasks.base.prompt_token_ids, as the workers do), x --samples each, one seed per
   request (1000 * prompt + sample), --temperature, top_p 1, up to --max-new-tokens, through
     bare: vLLM's `LLM(model).generate(TokensPrompt(ids), [SamplingParams(seed=...)])` in a plain process;
     ours: a GenerationWorker (backend "vllm") started by `start_actors` (learner=None, as evaluation starts
           it) as a Ray actor on one GPU, called through `GeneratorGroup.generate` as the driver calls it
           (the user messages go in: the worker renders and tokenizes them, decodes the texts, and the
           Completions come back through Ray: all of that is inside its time).
   Both on the same GPU (CUDA_VISIBLE_DEVICES=0), one after the other, each after a short warm-up call:
   generated tokens (EOS included, as vLLM counts them) / seconds of each of --repeats calls; the table
   gives the median and ours / bare (target >= 0.9). Same engine arguments: dtype (bf16 on cuda,
   devices.DEVICES), max_model_len = max_prompt_tokens + max_new_tokens (capped at the model's positions),
   gpu_memory_utilization, prefix caching on, engine seed 0, tensor parallel 1; on CPU both add
   VLLM_CPU_ENGINE_ARGS. Only ours sets worker_extension_cls (the weight-sync mixin), generation_config="vllm"
   (the model's generation_config.json is ignored; here every sampling field is given anyway) and
   logprobs_mode (unused: no logprobs are requested). Prefix caching stays on in the repeats on both sides.
2. sync: a LearnerWorker (DeepSpeed, ZeRO --zero-stage, bf16 on cuda) and a vLLM GenerationWorker, each on a GPU
   of its own, from `start_actors`; `init_weight_sync` (timed once), then `sync_weights` (the driver's step 7:
   learner rank 0 broadcasts every parameter in 256 MiB buckets over NCCL, the engine reloads them in place
   and resets its prefix cache): one warm-up, then the median of --syncs. NCCL cannot put two ranks on one GPU,
   so this needs 2 GPUs; with fewer it is recorded as skipped. On CPU it runs on gloo, fp32
   (devices.DEVICES). A short generation after the last sync checks the engine still samples.
3. e2e: `jobs/train.py` (driver.train) with --preset paper-1.5b, the vLLM backend and the GPUs present
   (learners and generators half each unless --num-learners / --num-generators say), for --e2e-steps steps
   of --e2e-prompts-per-step x --e2e-samples-per-prompt samples at --e2e-max-new-tokens, on NuminaMath-format
   rows made from ../shared/data/gsm8k/train.jsonl (no dataset download). From its metrics.jsonl, the steps
   after the first (whose time/generate includes the engines' start-up): generated tokens / step seconds /
   GPUs (learners + generators; on CPU: per actor), generation-phase tokens/s per generation GPU, and the
   phase breakdown (time/generate, time/grade, time/update, time/sync). Also needs 2 GPUs: start_actors gives
   every learner and every generation worker a whole GPU. The last step saves a checkpoint (not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_workload.py and gpu_tables.py beside this file

from gpu_tables import print_tables  # noqa: E402
from gpu_workload import DATASETS, TINY, max_model_len, resolve_model, rollout_config, workload  # noqa: E402

PARTS = ("generation", "sync", "e2e")


def start_ray(arguments: argparse.Namespace) -> None:
    import ray

    cpus = {"num_cpus": max(4, os.cpu_count() or 1)} if arguments.device == "cpu" else {}  # fractional actors
    # env_vars of the job's runtime env reach every actor (tests/test_vllm.py): the --vllm-in-process choice
    env = {key: os.environ[key] for key in ("VLLM_ENABLE_V1_MULTIPROCESSING", "HF_HUB_OFFLINE") if key in os.environ}
    for attempt in range(3):  # Ray gives its raylet 30 s to register (fixed in ray 2.60): a loaded machine misses it
        try:
            ray.init(address="local", include_dashboard=False, runtime_env={"env_vars": env}, **cpus)
            return
        except Exception as error:  # noqa: BLE001 (only that time-out is retried)
            if "timed out during startup" not in str(error) or attempt == 2:
                raise
            ray.shutdown()


# ---------------------------------------------------------------------------------------- 1. generation


def timed_runs(generate, count: int) -> list[dict[str, float]]:
    """`generate()` returns the generated tokens; one warm-up call has been made by the caller."""
    runs = []
    for _ in range(count):
        began = time.perf_counter()
        tokens = generate()
        seconds = time.perf_counter() - began
        runs.append({"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds})
    return runs


def generation_bare(arguments: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    import_s = time.perf_counter() - began
    from ray_effreason.actors.generator import VLLM_CPU_ENGINE_ARGS
    from ray_effreason.devices import DEVICES

    _, ids, seeds = workload(arguments)
    device_args = ({"gpu_memory_utilization": arguments.gpu_memory_utilization} if arguments.device == "cuda"
                   else VLLM_CPU_ENGINE_ARGS)
    began = time.perf_counter()
    llm = LLM(model=arguments.model, seed=0, dtype=DEVICES[arguments.device].dtype, tensor_parallel_size=1,
              max_model_len=max_model_len(arguments), enable_prefix_caching=True, **device_args)
    start_s = time.perf_counter() - began

    def generate(count: int | None = None, max_tokens: int | None = None) -> int:
        params = [SamplingParams(n=1, temperature=arguments.temperature, top_p=1.0, seed=seed,
                                 max_tokens=max_tokens or arguments.max_new_tokens) for seed in seeds[:count]]
        outputs = llm.generate([TokensPrompt(prompt_token_ids=prompt) for prompt in ids[:count]], params,
                               use_tqdm=False)
        return sum(len(output.outputs[0].token_ids) for output in outputs)

    generate(count=16, max_tokens=16)  # warm-up
    return {"requests": len(ids), "import_s": import_s, "start_s": start_s,
            "runs": timed_runs(generate, arguments.repeats)}


def generation_ours(arguments: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    import ray

    from ray_effreason.actors.generator import SampleRequest
    from ray_effreason.actors.launch import start_actors, stop_actors
    from ray_effreason.config import RewardConfig
    from ray_effreason.tasks import load_task

    import_s = time.perf_counter() - began  # vLLM itself is imported in the actor, inside start-up
    messages, _, seeds = workload(arguments)
    start_ray(arguments)
    began = time.perf_counter()
    rollout = rollout_config(arguments)
    task = load_task(arguments.dataset, path=arguments.data_dir / arguments.dataset, split=DATASETS[arguments.dataset])
    actors = start_actors(name="bench-gpu-generation", task=task, model_path=arguments.model, tokenizer_path=None,
                          device=arguments.device, rollout=rollout, reward=RewardConfig(num_verifiers=1), seed=0)
    ray.get([worker.__ray_ready__.remote() for worker in actors.generators.workers])
    start_s = time.perf_counter() - began
    requests = [SampleRequest(index, index // arguments.samples, index % arguments.samples, message, seed)
                for index, (message, seed) in enumerate(zip(messages, seeds))]
    sampling = rollout.sampling()

    def generate(count: int | None = None, max_tokens: int | None = None) -> int:
        chosen = sampling if max_tokens is None else rollout.sampling(max_new_tokens=max_tokens)
        return sum(completion.num_tokens for completion in actors.generators.generate(requests[:count], chosen))

    generate(count=16, max_tokens=16)  # warm-up
    runs = timed_runs(generate, arguments.repeats)
    stop_actors(actors)
    return {"requests": len(requests), "import_s": import_s, "start_s": start_s, "runs": runs}


# ---------------------------------------------------------------------------------------- 2. weight sync


def weight_sync(arguments: argparse.Namespace) -> dict[str, Any]:
    import ray
    import torch

    from ray_effreason.actors.generator import SampleRequest
    from ray_effreason.actors.launch import init_weight_sync, start_actors, stop_actors, sync_weights
    from ray_effreason.config import LearnerConfig, LossConfig, RewardConfig
    from ray_effreason.tasks import load_task

    start_ray(arguments)
    rollout = rollout_config(arguments)
    task = load_task(arguments.dataset, path=arguments.data_dir / arguments.dataset, split=DATASETS[arguments.dataset])
    learner = LearnerConfig(num_learners=1, zero_stage=arguments.zero_stage, train_batch_size=1, micro_batch_size=1,
                            num_cpus_per_actor=0.5 if arguments.device == "cpu" else 1.0)
    began = time.perf_counter()
    # kl_coef 0: no reference model to load; the sync sends the policy only either way
    actors = start_actors(name="bench-gpu-sync", task=task, model_path=arguments.model, tokenizer_path=None,
                          device=arguments.device, rollout=rollout, reward=RewardConfig(num_verifiers=1), seed=0,
                          learner=learner, loss=LossConfig(kl_coef=0.0))
    ray.get([worker.__ray_ready__.remote() for worker in actors.generators.workers + actors.learners.workers])
    start_s = time.perf_counter() - began
    began = time.perf_counter()
    specs = init_weight_sync(actors, rollout)
    init_s = time.perf_counter() - began
    sync_weights(actors, specs)  # warm-up: NCCL sets up its channels on the first broadcast
    seconds = []
    for _ in range(arguments.syncs):
        began = time.perf_counter()
        sync_weights(actors, specs)
        seconds.append(time.perf_counter() - began)
    num_bytes = sum(spec.numel * torch.empty((), dtype=spec.torch_dtype).element_size() for spec in specs)
    probe = [SampleRequest(0, 0, 0, task.examples[0].prompt, seed=0)]
    probe_tokens = actors.generators.generate(probe, rollout.sampling(max_new_tokens=8))[0].num_tokens
    stop_actors(actors)
    return {"start_s": start_s, "init_s": init_s, "sync_s": seconds, "median_s": statistics.median(seconds),
            "tensors": len(specs), "bytes": num_bytes, "dtype": specs[0].dtype, "tokens_after_sync": probe_tokens}


# ---------------------------------------------------------------------------------------- 3. end to end


def end_to_end(arguments: argparse.Namespace, gpus: int, env: dict[str, str]) -> dict[str, Any]:
    output = arguments.output_dir / "e2e"
    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.jsonl").unlink(missing_ok=True)
    learners = arguments.num_learners or max(1, gpus // 2)
    generators = arguments.num_generators or max(1, gpus - learners)
    B, G, steps = arguments.e2e_prompts_per_step, arguments.e2e_samples_per_prompt, arguments.e2e_steps
    # NuminaMath's format (problem, solution with a last box) from GSM8K train rows, as tests/test_jobs.py does
    rows = (arguments.data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[: 2 * B * steps]
    train = output / "numina_from_gsm8k.jsonl"
    train.write_text("".join(json.dumps({"problem": row["question"], "solution": f"so \\boxed{{{row['final']}}}"})
                             + "\n" for row in map(json.loads, rows)))
    flags = ["--preset", "paper-1.5b", "--model", arguments.model, "--task", "numina_math", "--task-path", str(train),
             "--max-prompts", str(len(rows)), "--drop-long-prompts", "--steps", str(steps),
             "--prompts-per-step", str(B), "--samples-per-prompt", str(G), "--train-batch-size", str(B * G // 2),
             "--num-learners", str(learners), "--num-generators", str(generators),
             "--max-new-tokens", str(arguments.e2e_max_new_tokens), "--max-prompt-tokens",
             str(arguments.max_prompt_tokens), "--gpu-memory-utilization", str(arguments.gpu_memory_utilization),
             "--generator-backend", "vllm", "--device", arguments.device, "--output-dir", str(output),
             "--run-name", "bench-gpu-e2e"]
    if arguments.device == "cpu":  # two cores advertise 2 CPUs: actors take fractions of them
        flags += ["--num-cpus-per-actor", "0.5", "--ray-num-cpus", "4"]
    command = [sys.executable, str(REPO_ROOT / "jobs" / "train.py"), *flags, *shlex.split(arguments.train_args)]
    print("e2e:", shlex.join(command), flush=True)
    began = time.perf_counter()
    # RAY_ADDRESS=local: a Ray instance of its own, never a cluster already running on this machine
    result = subprocess.run(command, cwd=REPO_ROOT, env={**env, "RAY_ADDRESS": "local"}, capture_output=True,
                            text=True, timeout=arguments.timeout_s)
    wall_s = time.perf_counter() - began
    print(f"e2e: {wall_s:.0f} s in its process", flush=True)
    if result.returncode != 0:
        raise RuntimeError(f"jobs/train.py failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines() if line.strip()]
    with_step_totals(records)
    timed = records[1:] or records  # the first step's time/generate includes the engines' start-up

    def median(key: str) -> float:
        return statistics.median(record[key] for record in timed)

    phases = {key: median(key) for key in ("time/generate", "time/grade", "time/update", "time/sync")}
    return {"command": command, "wall_s": wall_s, "learners": learners, "generators": generators,
            "steps": len(records), "steps_timed": len(timed), "phases": phases,
            "step_s": median("step_s"), "tokens_per_step": median("tokens"),
            "tokens_per_second": median("tokens_per_second"),
            "step_tokens_per_second": median("step_tokens_per_second"),
            "tokens_per_second_per_gpu": median("step_tokens_per_second") / (learners + generators),
            "generate_tokens_per_second_per_gpu": median("tokens_per_second") / generators,
            "records": records}


def with_step_totals(records: list[dict[str, Any]]) -> None:
    """Add each record's step seconds (its time/* phases) and generated tokens, as the driver computes them."""
    for record in records:
        record["step_s"] = sum(value for key, value in record.items() if key.startswith("time/"))
        record["tokens"] = record["step_tokens_per_second"] * record["step_s"]


# ---------------------------------------------------------------------------------------- driver


CELLS = {"generation-bare": generation_bare, "generation-ours": generation_ours, "sync": weight_sync}


def run_cell(name: str, arguments: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """One measurement in a fresh process (this script with --cell NAME)."""
    command = [sys.executable, __file__, *sys.argv[1:], "--model", arguments.model, "--data-dir",
               str(arguments.data_dir), "--output-dir", str(arguments.output_dir), "--cell", name]
    began = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=arguments.timeout_s)
    print(f"{name}: {time.perf_counter() - began:.0f} s in its process", flush=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def environment(arguments: argparse.Namespace, gpus: int) -> dict[str, Any]:
    names = []
    if arguments.device == "cuda":
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True)
        names = query.stdout.strip().splitlines()
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("torch", "vllm", "vllm-cpu", "deepspeed", "ray", "transformers"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"device": arguments.device, "gpus": gpus, "gpu_names": names, "cpus": os.cpu_count(),
            "host": platform.node(), "load_average": os.getloadavg()[0], "versions": versions,
            "date": time.strftime("%Y-%m-%d %H:%M")}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
                        help=f"HF id (in the local cache) or local path; {TINY}: random tiny model built here")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: the smoke test (vllm-cpu)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "runs" / "bench" / "gpu",
                        help="results.json, the e2e run and the tiny model go here")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data",
                        help="benchmark data, one folder per task (shared/data)")
    group = parser.add_argument_group("generation (and the sync's engine)")
    group.add_argument("--dataset", default="math500", choices=sorted(DATASETS), help="prompts' source")
    group.add_argument("--prompts", type=int, default=256, help="problems (the first that fit --max-prompt-tokens)")
    group.add_argument("--samples", type=int, default=4, help="samples per problem, each with its own seed")
    group.add_argument("--temperature", type=float, default=0.6, help="the paper's evaluation temperature")
    group.add_argument("--max-new-tokens", type=int, default=1024, help="generation budget per request")
    group.add_argument("--max-prompt-tokens", type=int, default=512, help="longer prompts are skipped (paper: 512)")
    group.add_argument("--gpu-memory-utilization", type=float, default=0.85, help="vLLM's, both sides (the default)")
    group.add_argument("--repeats", type=int, default=2, help="timed generate calls per side, after a warm-up")
    group.add_argument("--vllm-in-process", action="store_true",
                       help="VLLM_ENABLE_V1_MULTIPROCESSING=0 everywhere (starts 3-5x faster on CPU; the smoke test)")
    group = parser.add_argument_group("sync")
    group.add_argument("--syncs", type=int, default=5, help="timed syncs after one warm-up")
    group.add_argument("--zero-stage", type=int, default=2, help="the learner's ZeRO stage (paper 1.5B: 2)")
    group = parser.add_argument_group("e2e")
    group.add_argument("--e2e-steps", type=int, default=3, help="RL steps (the first is not timed)")
    group.add_argument("--e2e-prompts-per-step", type=int, default=16, help="B (the paper: 32)")
    group.add_argument("--e2e-samples-per-prompt", type=int, default=8, help="G (the paper: 8)")
    group.add_argument("--e2e-max-new-tokens", type=int, default=1024, help="the paper: 32000")
    group.add_argument("--num-learners", type=int, default=None, help="default: half the GPUs")
    group.add_argument("--num-generators", type=int, default=None, help="default: the other half")
    group.add_argument("--train-args", default="", help="more jobs/train.py flags, e.g. '--zero-stage 3'")
    parser.add_argument("--timeout-s", type=float, default=1800, help="per measurement process")
    parser.add_argument("--cell", choices=sorted(CELLS), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    arguments = parse_arguments()
    if arguments.cell:
        print("RESULT " + json.dumps(CELLS[arguments.cell](arguments)), flush=True)
        return
    parts = arguments.parts.split(",")
    if unknown := sorted(set(parts) - set(PARTS)):
        raise SystemExit(f"--parts: unknown {unknown}; choose from {list(PARTS)}")
    # absolute: the measurement processes and jobs/train.py run from the repository root
    arguments.output_dir, arguments.data_dir = arguments.output_dir.resolve(), arguments.data_dir.resolve()
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    arguments.model = resolve_model(arguments.model, arguments.output_dir)
    gpus = 0
    if arguments.device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
        if gpus == 0:
            raise SystemExit("--device cuda: no CUDA device here (the CPU smoke test: --device cpu)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    if arguments.vllm_in_process:
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    results: dict[str, Any] = {"model": arguments.model, "environment": environment(arguments, gpus),
                               "arguments": {key: str(value) for key, value in vars(arguments).items()}}
    path = arguments.output_dir / "results.json"

    def save() -> None:  # after every part: a part that fails keeps the ones before
        path.write_text(json.dumps(results, indent=2))

    two_devices = arguments.device == "cpu" or gpus >= 2
    if "generation" in parts:
        one_gpu = {**env, "CUDA_VISIBLE_DEVICES": "0"} if arguments.device == "cuda" else env  # the same GPU
        generation = {side: run_cell(f"generation-{side}", arguments, one_gpu) for side in ("bare", "ours")}
        for cell in generation.values():
            cell["tokens_per_second"] = statistics.median(run["tokens_per_second"] for run in cell["runs"])
        generation["ratio"] = generation["ours"]["tokens_per_second"] / generation["bare"]["tokens_per_second"]
        results["generation"] = generation
        save()
    if "sync" in parts:
        results["sync"] = (run_cell("sync", arguments, env) if two_devices else
                           {"skipped": f"skipped: needs 2 GPUs (a learner and a vLLM engine), found {gpus}"})
        save()
    if "e2e" in parts:
        if two_devices:
            results["e2e"] = end_to_end(arguments, gpus, env)
        else:
            results["e2e"] = {"skipped": f"skipped: needs 2 GPUs (a learner and a generation worker), found {gpus}"}
    save()
    print_tables(results)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
