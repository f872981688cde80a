"""Pick a model from a family with a guarantee: the cheapest whose accuracy is, with 95% confidence, at most
epsilon below the base model's.

For each candidate the evaluation records are paired with the base's on the same problems (task,
problem_id): d_i = accuracy_model(i) - accuracy_base(i), each a mean over that problem's samples. The
one-sided lower confidence bound of the mean paired difference is

    lower = mean(d) - t_{confidence, n-1} * std(d, ddof=1) / sqrt(n)

and a candidate qualifies when lower >= -epsilon. Among the qualifying, the one with the fewest mean
generated tokens (over the same problems) is chosen; when none qualifies, that is the answer. Pairing
removes the problem-difficulty variance that two independent accuracies would carry, which is what makes
300 problems enough to tell 2 points apart. Pure: records in, a dict out.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import numpy as np
from scipy import stats


def per_problem(rows: Iterable[dict[str, Any]]) -> dict[str, dict[tuple[str, str], tuple[float, float]]]:
    """model -> (task, problem_id) -> (accuracy over its samples, mean tokens over its samples)."""
    grouped: dict[str, dict[tuple[str, str], list[tuple[bool, int]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        grouped[row["model"]][(row["task"], row["problem_id"])].append((bool(row["correct"]), int(row["num_tokens"])))
    return {model: {key: (float(np.mean([c for c, _ in samples])), float(np.mean([n for _, n in samples])))
                    for key, samples in problems.items()} for model, problems in grouped.items()}


def paired_lower_bound(differences: np.ndarray, confidence: float = 0.95) -> float:
    """One-sided lower confidence bound of the mean of paired differences (Student t).

    >>> float(round(paired_lower_bound(np.array([0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0])), 4))
    -0.358
    """
    n = len(differences)
    if n < 2:
        raise ValueError(f"a paired bound needs at least 2 shared problems, got {n}")
    spread = float(np.std(differences, ddof=1))
    return float(np.mean(differences)) - float(stats.t.ppf(confidence, n - 1)) * spread / np.sqrt(n)


def select_model(rows: Iterable[dict[str, Any]], base: str, epsilon: float,
                 confidence: float = 0.95) -> dict[str, Any]:
    """{"choice": name or None, "base", "epsilon", "confidence", "candidates": [per-model bound, tokens, ...]}."""
    if not 0 <= epsilon < 1:
        raise ValueError(f"epsilon must be in [0, 1) (an accuracy difference), got {epsilon}")
    table = per_problem(rows)
    if base not in table:
        raise ValueError(f"base model {base!r} is not in the records; models: {sorted(table)}")
    candidates = []
    for model in sorted(set(table) - {base}):
        shared = sorted(set(table[model]) & set(table[base]))
        differences = np.array([table[model][key][0] - table[base][key][0] for key in shared])
        lower = paired_lower_bound(differences, confidence)
        candidates.append({
            "model": model, "problems": len(shared), "accuracy": float(np.mean([table[model][k][0] for k in shared])),
            "base_accuracy": float(np.mean([table[base][k][0] for k in shared])),
            "mean_difference": float(np.mean(differences)), "lower_bound": lower,
            "mean_tokens": float(np.mean([table[model][k][1] for k in shared])),
            "base_mean_tokens": float(np.mean([table[base][k][1] for k in shared])),
            "qualifies": lower >= -epsilon})
    qualifying = [candidate for candidate in candidates if candidate["qualifies"]]
    choice = min(qualifying, key=lambda candidate: candidate["mean_tokens"], default=None)
    return {"choice": None if choice is None else choice["model"], "base": base, "epsilon": epsilon,
            "confidence": confidence, "candidates": sorted(candidates, key=lambda c: c["mean_tokens"])}


def describe(selection: dict[str, Any]) -> str:
    """The printed answer: the choice and its bound, or that none qualifies, and every candidate's numbers."""
    lines = ["| model | problems | accuracy | base accuracy | lower bound of the difference | mean tokens | "
             "qualifies |", "|---|---|---|---|---|---|---|"]
    for candidate in selection["candidates"]:
        lines.append(f"| {candidate['model']} | {candidate['problems']} | {100 * candidate['accuracy']:.1f}% | "
                     f"{100 * candidate['base_accuracy']:.1f}% | {100 * candidate['lower_bound']:+.1f} pts | "
                     f"{candidate['mean_tokens']:.1f} | {'yes' if candidate['qualifies'] else 'no'} |")
    level = f"{100 * selection['confidence']:.0f}%"
    if selection["choice"] is None:
        head = (f"no model qualifies: none is, with {level} confidence, within "
                f"{100 * selection['epsilon']:.1f} points of {selection['base']}")
    else:
        chosen = next(c for c in selection["candidates"] if c["model"] == selection["choice"])
        head = (f"choice: {chosen['model']} ({chosen['mean_tokens']:.1f} mean tokens, "
                f"{100 * chosen['mean_tokens'] / chosen['base_mean_tokens']:.0f}% of the base's); with {level} "
                f"confidence its accuracy is at most {-100 * chosen['lower_bound']:.1f} points below "
                f"{selection['base']}'s (allowed: {100 * selection['epsilon']:.1f})")
    return head + "\n\n" + "\n".join(lines)
