"""Model selection with a guarantee (pure): the paired bound and the cheapest qualifying model."""

import numpy as np
import pytest

from ray_effreason.selection import describe, paired_lower_bound, select_model


def records(model: str, correct: list[bool], tokens: int) -> list[dict]:
    return [{"model": model, "task": "synthetic", "problem_id": f"p{index}", "sample_index": 0,
             "num_tokens": tokens, "correct": value} for index, value in enumerate(correct)]


def test_paired_bound_matches_a_hand_computed_t_bound():
    differences = np.array([0.0, 1.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    # mean 0.2, std (ddof 1) 0.6325, t_{0.95, 9} = 1.8331 -> 0.2 - 1.8331 * 0.6325 / sqrt(10) = -0.1667
    assert paired_lower_bound(differences) == pytest.approx(-0.16666, abs=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        paired_lower_bound(np.array([1.0]))


def test_the_cheapest_model_within_epsilon_is_chosen():
    rng = np.random.default_rng(0)
    base = rng.random(300) < 0.9
    same = base.copy()  # identical answers at half the tokens: bound 0
    worse = base & (rng.random(300) < 0.8)  # loses ~18 points: never within 2
    rows = (records("base", list(base), 100) + records("alpha-0.1", list(same), 50)
            + records("alpha-0.4", list(worse), 20))
    selection = select_model(rows, "base", epsilon=0.02)
    assert selection["choice"] == "alpha-0.1"
    by_model = {c["model"]: c for c in selection["candidates"]}
    assert by_model["alpha-0.1"]["lower_bound"] == 0.0 and not by_model["alpha-0.4"]["qualifies"]
    assert "choice: alpha-0.1" in describe(selection)


def test_none_qualifies_is_reported():
    rows = records("base", [True] * 50, 100) + records("short", [True] * 25 + [False] * 25, 10)
    selection = select_model(rows, "base", epsilon=0.05)
    assert selection["choice"] is None and describe(selection).startswith("no model qualifies")


def test_unknown_base_names_the_models():
    with pytest.raises(ValueError, match="not in the records; models: \\['a'\\]"):
        select_model(records("a", [True, False], 5), "base", 0.02)
