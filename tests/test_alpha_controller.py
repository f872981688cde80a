"""The alpha controller on synthetic streams (pure, sub-second): convergence, bounds, band, floor, resume."""

from dataclasses import replace

import numpy as np
import pytest

from ray_effreason.alpha_controller import AlphaController, ControllerConfig

# The loop's generic properties on a policy that answers alpha at once, under plain dual ascent (K_p = K_d = 0):
# its derivative term assumes a policy that answers over steps, as RL's does (run_lagged), and would make this
# instant response oscillate.
DUAL = {"controller_kp": 0.0, "controller_kd": 0.0, "accuracy_kp": 0.0, "accuracy_kd": 0.0,
        "controller_step_size": 0.05, "accuracy_step_size": 1.0}


def tokens_at(alpha: float, base: float = 100.0) -> float:
    """A monotone response: the policy's mean tokens fall with alpha (down to 30% of the base at alpha 1)."""
    return base * (1.0 - 0.7 * alpha)


def run(config: ControllerConfig, steps: int, noise: float = 0.0, seed: int = 0,
        accuracy=lambda alpha: 0.9 - 0.3 * alpha) -> tuple[AlphaController, list[float], list[float]]:
    """A policy that answers alpha at once (tokens_at)."""
    rng = np.random.default_rng(seed)
    controller = AlphaController(config)
    alphas, lengths = [], []
    for _ in range(steps):
        alpha = controller.alpha
        mean_tokens = tokens_at(alpha) * (1 + noise * rng.normal())
        lengths.append(mean_tokens)
        alphas.append(controller.update(mean_tokens, accuracy(alpha)))
    return controller, alphas, lengths


def run_lagged(config: ControllerConfig, steps: int, lag: int = 3, rate: float = 0.1) -> list[float]:
    """A policy like the RL one (docs/controller.md): at a fixed alpha its tokens keep falling, by `rate` x alpha of
    them per step, `lag` steps after alpha was set (the update needs samples of the new reward first). Mean tokens
    of each step."""
    controller, tokens, applied, lengths = AlphaController(config), 100.0, [config.initial_alpha] * lag, []
    for _ in range(steps):
        lengths.append(tokens)
        applied.append(controller.update(tokens, 0.9))
        tokens -= rate * applied[-1 - lag] * tokens
    return lengths


def test_token_ratio_target_converges_on_a_monotone_response():
    controller, alphas, lengths = run(ControllerConfig(target_token_ratio=0.6, **DUAL), steps=60)
    assert controller.state.target_tokens == pytest.approx(60.0)  # 0.6 x the first step's 100 tokens
    assert np.mean(lengths[-5:]) == pytest.approx(60.0, rel=0.02)
    assert alphas[-1] == pytest.approx(0.4 / 0.7, abs=0.02)  # the alpha where tokens_at(alpha) = 60


def test_noisy_stream_stays_within_the_stated_band():
    # 5% batch noise: after convergence, alpha stays within +-0.05 and the tokens within +-10% of the target
    _, alphas, lengths = run(ControllerConfig(target_tokens=60.0, **DUAL), steps=120, noise=0.05, seed=1)
    assert max(alphas[40:]) - min(alphas[40:]) < 0.1
    assert all(abs(length / 60.0 - 1) < 0.2 for length in lengths[40:])
    assert abs(np.mean(lengths[40:]) / 60.0 - 1) < 0.1


def test_alpha_respects_its_bounds():
    # an unreachable target pushes alpha to alpha_max, never beyond; a generous one keeps it at 0
    _, alphas, _ = run(ControllerConfig(target_tokens=1.0, alpha_max=0.8), steps=200)
    assert max(alphas) == 0.8 and min(alphas) >= 0.0
    _, alphas, _ = run(ControllerConfig(target_tokens=1000.0), steps=20)
    assert alphas == [0.0] * 20


def test_accuracy_floor_raises_alpha_while_it_holds_and_stops_at_the_floor():
    controller, alphas, _ = run(ControllerConfig(accuracy_floor=0.75, **{**DUAL, "accuracy_step_size": 0.5}), steps=150)
    # accuracy(alpha) = 0.9 - 0.3 alpha meets the floor at alpha = 0.5
    assert alphas[-1] == pytest.approx(0.5, abs=0.02)
    assert controller.state.ema_accuracy == pytest.approx(0.75, abs=0.01)


def test_token_target_is_pursued_subject_to_the_floor():
    # the target needs alpha 0.57 but the floor (accuracy >= 0.8) allows only alpha <= 1/3
    _, alphas, _ = run(ControllerConfig(target_token_ratio=0.6, accuracy_floor=0.8, **DUAL), steps=200)
    assert alphas[-1] == pytest.approx(1 / 3, abs=0.03)


def test_accuracy_drop_measures_the_reference_first():
    controller, alphas, _ = run(ControllerConfig(accuracy_drop=0.06, reference_steps=3,
                                                 **{**DUAL, "accuracy_step_size": 0.5}), steps=100)
    assert alphas[:2] == [0.0, 0.0]  # alpha held while the reference accuracy is measured
    assert controller.state.accuracy_floor == pytest.approx(0.84)
    assert alphas[-1] == pytest.approx(0.2, abs=0.02)


def test_resume_from_the_state_dict_continues_exactly():
    config = ControllerConfig(target_token_ratio=0.6)
    first, _, _ = run(config, steps=10)
    copy = AlphaController(config, state=first.state_dict())
    for alpha in (0.3, 0.31):
        assert first.update(tokens_at(alpha), 0.8) == copy.update(tokens_at(alpha), 0.8)
    assert first.metrics() == copy.metrics() and "controller/token_violation" in first.metrics()


def test_bad_controller_settings_name_the_field():
    with pytest.raises(ValueError, match="give one of them"):
        ControllerConfig(target_tokens=100, target_token_ratio=0.5)
    with pytest.raises(ValueError, match="alpha_max"):
        ControllerConfig(alpha_max=1.0)


def test_the_pid_terms_meet_a_lagging_policy_where_dual_ascent_overshoots():
    # Dual ascent (K_p = K_d = 0) keeps raising alpha while the policy has not answered yet, and the policy then
    # falls far below the target; the default PID controller gets most of alpha at once and takes it back in time
    # (its small integral gain: the plant integrates, alpha_controller.py).
    dual = run_lagged(ControllerConfig(target_token_ratio=0.6, controller_kp=0.0, controller_kd=0.0,
                                       controller_step_size=0.05, initial_alpha=0.2), steps=40)
    pid = run_lagged(ControllerConfig(target_token_ratio=0.6), steps=40)
    assert min(dual) < 0.6 * 60.0  # 40% under the 60-token target
    assert min(pid) > 0.95 * 60.0  # under by 5% at most, after 40 steps
    assert np.mean(pid[15:20]) < 0.8 * 100.0 and np.mean(pid[35:40]) < 1.05 * 60.0  # moving by step 15, there by 35
    # the previous default's integral gain (0.02) carries the same policy past the target
    overshooting = run_lagged(ControllerConfig(target_token_ratio=0.6, controller_step_size=0.02), steps=40)
    assert min(overshooting) < min(pid) - 3.0


def test_a_state_saved_before_the_integral_term_resumes_from_its_alpha():
    config = ControllerConfig(target_tokens=60.0, controller_kp=0.0)
    old = {"alpha": 0.3, "steps": 5, "ema_tokens": 80.0, "ema_accuracy": 0.9, "target_tokens": 60.0,
           "accuracy_floor": None, "reference_accuracy_sum": 0.0}
    assert AlphaController(config, state=old).update(80.0, 0.9) == pytest.approx(
        0.3 + config.controller_step_size * (80 / 60 - 1))


def run_cliff(config: ControllerConfig, steps: int) -> tuple[AlphaController, list[float]]:
    """A policy with a cliff and no way back, like the built-in task's hint (docs/controller.md): its accuracy is
    0.98 until it has been updated two steps running at alpha > 0.5, then 0.8 for good. The loop is the driver's
    (floor_guard.py): a reading that holds the floor snapshots the weights and the controller, one that breaks it
    restores them and the step's update is dropped. The probe's reading of each step."""
    controller, weights, snapshot, readings = AlphaController(config), {"streak": 0, "collapsed": False}, None, []
    for _ in range(steps):
        accuracy = 0.8 if weights["collapsed"] else 0.98
        readings.append(accuracy)
        reading = controller.floor_reading(accuracy)
        if reading == "holds":
            snapshot = (dict(weights), controller.state_dict())
        elif reading == "breaks" and snapshot is not None:
            weights = dict(snapshot[0])
            controller.roll_back(snapshot[1])
            continue
        alpha = controller.alpha  # this step's update
        weights["streak"] = weights["streak"] + 1 if alpha > 0.5 else 0
        weights["collapsed"] = weights["collapsed"] or weights["streak"] >= 2
        controller.update(tokens_at(alpha), accuracy)
    return controller, readings


def test_a_rollback_holds_a_floor_that_lowering_alpha_cannot():
    plain, readings = run_cliff(ControllerConfig(accuracy_floor=0.93, floor_rollback=False), steps=40)
    assert readings[-10:] == [0.8] * 10 and plain.alpha == 0.0  # alpha fell to 0, and accuracy stayed down
    guarded, readings = run_cliff(ControllerConfig(accuracy_floor=0.93), steps=40)
    # additive increase, multiplicative decrease: the ceiling creeps back over the cliff now and then, and each
    # time the next reading sends the weights back
    assert guarded.state.rollbacks >= 1 and 0.8 in readings
    assert all(after == 0.98 for before, after in zip(readings, readings[1:]) if before == 0.8)
    assert readings.count(0.98) >= 0.85 * len(readings) and readings[-1] == 0.98  # 35 of 40 here
    assert 0 < guarded.alpha <= guarded.state.alpha_ceiling < guarded.config.alpha_max
    # the ceiling, the rollbacks and the steps come through a checkpoint (state_dict) exactly
    copy = AlphaController(guarded.config, state=guarded.state_dict())
    assert copy.update(50.0, 0.98) == guarded.update(50.0, 0.98) and copy.metrics() == guarded.metrics()
    assert guarded.metrics()["controller/rollbacks"] == guarded.state.rollbacks


def test_after_a_rollback_on_a_dip_alpha_did_not_cause_the_ceiling_comes_back():
    config = ControllerConfig(accuracy_floor=0.9, rollback_recovery=0.05)
    controller = AlphaController(config)
    for _ in range(3):
        controller.update(100.0, 0.98)
    saved = controller.state_dict()
    controller.roll_back(saved)  # a probe read 0.85 once: noise
    assert controller.state.alpha_ceiling == pytest.approx(0.5 * saved["alpha"])
    alphas = [controller.update(100.0, 0.98) for _ in range(40)]  # then the floor holds every step
    assert controller.state.alpha_ceiling == config.alpha_max and alphas[-1] == config.alpha_max
    stuck = AlphaController(replace(config, rollback_recovery=0.0), state=saved)
    stuck.roll_back(saved)
    assert max(stuck.update(100.0, 0.98) for _ in range(40)) == pytest.approx(0.5 * saved["alpha"])


def test_a_floor_reading_between_the_floor_and_its_tolerance_keeps_the_weights():
    controller = AlphaController(ControllerConfig(accuracy_floor=0.9, floor_tolerance=0.02))
    assert [controller.floor_reading(value) for value in (0.95, 0.9, 0.89, 0.879)] == ["holds", "holds", None,
                                                                                       "breaks"]
    waiting = AlphaController(ControllerConfig(accuracy_drop=0.02))  # no floor until the reference is measured
    assert waiting.floor_reading(0.0) is None
    with pytest.raises(ValueError, match="floor_tolerance"):
        ControllerConfig(accuracy_floor=0.9, floor_tolerance=1.5)
