"""bench/bench_gpu.py's markdown tables, printed from its results.json dict."""

from __future__ import annotations

from typing import Any


def print_tables(results: dict[str, Any]) -> None:
    info = results["environment"]
    print(f"\n{info['device']}: {info['gpus']} GPU(s) {', '.join(info['gpu_names'])}; load average "
          f"{info['load_average']:.1f} on {info['cpus']} CPUs; model {results['model']}\n")
    generation = results.get("generation")
    if generation and "skipped" not in generation:
        print("| generation | requests | start-up s | tokens | tok/s (median) | runs tok/s |\n"
              "|---|---|---|---|---|---|")
        for side in ("bare", "ours"):
            cell = generation[side]
            speeds = ", ".join(f"{run['tokens_per_second']:,.0f}" for run in cell["runs"])
            print(f"| {side} vLLM | {cell['requests']} | {cell['start_s']:.1f} | {cell['runs'][-1]['tokens']:,} | "
                  f"{cell['tokens_per_second']:,.0f} | {speeds} |")
        print(f"\nours / bare: {generation['ratio']:.3f} (target >= 0.9)\n")
    sync = results.get("sync")
    if sync and "skipped" in sync:
        print(f"sync {sync['skipped']}\n")
    elif sync:
        print("| weight sync | tensors | GB | init s | median s | syncs s | GB/s |\n|---|---|---|---|---|---|---|")
        print(f"| learner -> vLLM ({sync['dtype']}) | {sync['tensors']} | {sync['bytes'] / 1e9:.3f} | "
              f"{sync['init_s']:.2f} | {sync['median_s']:.3f} | {', '.join(f'{s:.3f}' for s in sync['sync_s'])} | "
              f"{sync['bytes'] / 1e9 / sync['median_s']:.2f} |\n")
    e2e = results.get("e2e")
    if e2e and "skipped" in e2e:
        print(f"e2e {e2e['skipped']}\n")
    elif e2e:
        phases = e2e["phases"]
        unit = "GPU" if info["device"] == "cuda" else "actor"
        print(f"| e2e | steps timed | tokens/step | step s | generate s | grade s | update s | sync s | "
              f"tok/s per {unit} | generate tok/s per generation {unit} |\n|---|---|---|---|---|---|---|---|---|---|")
        print(f"| {e2e['learners']} learner(s) + {e2e['generators']} generator(s) | {e2e['steps_timed']} of "
              f"{e2e['steps']} | {e2e['tokens_per_step']:,.0f} | {e2e['step_s']:.1f} | {phases['time/generate']:.1f} | "
              f"{phases['time/grade']:.2f} | {phases['time/update']:.1f} | {phases['time/sync']:.2f} | "
              f"{e2e['tokens_per_second_per_gpu']:,.0f} | {e2e['generate_tokens_per_second_per_gpu']:,.0f} |\n")
