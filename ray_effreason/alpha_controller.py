"""Ask for a budget, not an alpha: alpha as the multiplier of a constraint, updated after every rollout step.

The paper's reward is r = 1[correct] * (1 - alpha * sigmoid(z)); alpha is the price of length. Instead of
fixing it, projected dual ascent (as LACONIC and Leash do for their length penalties, A-DLP for an
accuracy floor) moves it after each rollout step on an exponential moving average (EMA) of the batch:

    token target      g_T = ema_tokens / target - 1               > 0: too long -> raise alpha
    accuracy floor    g_A = ema_accuracy - floor                  < 0: below the floor -> lower alpha
    integral          I <- clip(I + K_i * g, 0, alpha_max)        (starts at initial_alpha)
    alpha             alpha = clip(I + K_p * g + K_d * (g - g_prev), 0, alpha_max)
                      alpha_max < 1 (the paper's bound, rewards.py); g_prev: the last step's g (g at step 1)

with g = g_T (target only), g = g_A (floor only: alpha rises while accuracy holds), or, with both, g_T
while the floor holds and g_A once it does not: the token target is pursued subject to the floor. K_i is
controller_step_size (g_T) or accuracy_step_size (g_A), K_p controller_kp or accuracy_kp, K_d controller_kd
or accuracy_kd.

K_p = K_d = 0 is plain projected dual ascent (LACONIC, Leash, A-DLP). Departure: the proportional and
derivative terms of the PID Lagrangian (Stooke et al. 2020, "Responsive Safety in RL by PID Lagrangian
Methods"). The policy answers alpha several steps late and then keeps moving, so the integral alone keeps
rising while the lengths have not moved yet, and the policy overshoots: on the built-in task, dual ascent
from alpha 0.2 (K_i 0.05) reached 0.53 by step 15, and the last five of 20 steps were 43% under the
target (docs/controller.md). The proportional term gives most of alpha at once and takes it back as the
violation closes; the derivative term takes it back earlier while the violation closes fast (the policy's
momentum); the integral, with a small gain, removes the remaining offset.

The token target's gains (K_p 0.4, K_d 1, K_i 0.005) were tuned on the built-in task's third design, 20 steps
(docs/controller.md). The length behaves like an integrator: at any alpha > 0 it keeps falling (the reward prefers
the shorter of a group's correct samples however short they already are), at alpha 0 it stays (the fixed alpha-0
run keeps 92% of the base's tokens). Alpha near 0 holds a length once reached, so the integral, whose state keeps
alpha up after the target is met, mostly adds overshoot: with K_i 0.02 (and K_p 0.5, K_d 2) the test split ended
25% under the target, with 0.005 (K_p 0.4, K_d 1) 8% under. K_d 2 on a 64-prompt probe also swung alpha by
0.3 from one step to the next on noise alone. The price of the small K_i: a seed whose policy shortens slowly is
pushed no harder (seeds 0 and 1 ended 22% and 26% over the target in 20 steps).

The accuracy floor's integral gain (1.5, was 0.5) is large because a floor must be reached to be held: on the
built-in task the policy keeps its accuracy while alpha climbs and only then trades it, so with 0.5 alpha was
0.66 after 20 steps and the test split 5.3 points over a 0.93 floor; with 1.5 alpha reached its cap at step 13
and the test split ended 0.3 points over it (docs/controller.md). Overshooting the floor is what the rollback
is for (floor_guard.py): on this task a policy that falls through it does not come back at alpha 0.

`target_token_ratio` R resolves the target to R times the mean tokens of the first rollout step (the
base model's, before any update); `accuracy_drop` D resolves the floor to the mean accuracy of the first
`reference_steps` steps minus D, alpha held at its initial value until then.

The batch statistic is the training batch's (temperature 1.0, the prompts being trained on) unless
--controller-probe-prompts N is given: then N held-out training prompts are sampled once each step at the
evaluation temperature (driver.py, step 2) and the controller reads theirs. Departure from LACONIC/Leash,
which constrain the training batch: with the batch, the target and the floor hold at temperature 1.0, and
the model is used at 0.6, where its lengths and accuracy differ (on the built-in task the base is 89% /
97 tokens at 1.0 and 98% / 108 tokens at 0.6; docs/controller.md).

Relative violations (g_T) make one step size fit any budget. Departure from a plain dual update: the
EMA smooths the batch statistic (32 prompts are noisy), which is what keeps alpha inside a band
instead of chasing every batch (tests/test_alpha_controller.py measures the band on synthetic streams).
Pure: no Ray, no I/O; the state is a plain dict so a checkpoint can carry it and a resume continue exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ray_effreason.config_tree import check_positive, option


@dataclass(frozen=True)
class ControllerConfig:
    """Alpha as a state of the run, driven toward a token budget or held by an accuracy floor (alpha_controller.py)."""

    target_tokens: float | None = option(None, "drive the batch mean tokens to this many (alpha updated every step)")
    target_token_ratio: float | None = option(None, "drive mean tokens to this ratio of the first rollout step's "
                                                    "(the base model's), e.g. 0.6")
    accuracy_floor: float | None = option(None, "keep batch accuracy above this (absolute, 0-1): alpha rises while "
                                                "it holds and falls when it dips below")
    accuracy_drop: float | None = option(None, "floor = the first reference_steps' mean batch accuracy minus this")
    reference_steps: int = option(3, "rollout steps that measure the reference accuracy of --accuracy-drop")
    controller_step_size: float = option(0.005, "dual step size (integral gain) on the relative token violation "
                                               "(mean/target - 1)")
    accuracy_step_size: float = option(1.5, "dual step size (integral gain) on the accuracy slack (accuracy - floor)")
    controller_ema: float = option(0.5, "EMA weight of the previous value for the batch statistics (0: none)")
    controller_kp: float = option(0.4, "proportional gain on the relative token violation (0: plain dual ascent)")
    accuracy_kp: float = option(5.0, "proportional gain on the accuracy slack (0: plain dual ascent)")
    controller_kd: float = option(1.0, "derivative gain on the step-to-step change of the relative token violation")
    accuracy_kd: float = option(5.0, "derivative gain on the step-to-step change of the accuracy slack")
    initial_alpha: float = option(0.0, "alpha of the first step (the controller's integral starts here; --alpha "
                                       "is not read)")
    alpha_max: float = option(0.95, "upper bound of alpha (< 1: a long correct answer must beat a wrong one)")
    controller_probe_prompts: int = option(0, "held-out training prompts sampled once each step at "
                                              "--controller-probe-temperature; the controller reads their mean tokens "
                                              "and accuracy instead of the training batch's (0: the batch's)")
    controller_probe_temperature: float = option(0.6, "temperature of the probe (the evaluation protocol's, "
                                                      "PAPER.md §4): the budget holds where the model is used")
    floor_rollback: bool = option(True, "with a floor and a probe: when the probe reads more than floor_tolerance "
                                        "under the floor, go back to the last weights whose probe held it, and cap "
                                        "alpha at rollback_backoff x the alpha that left them (floor_guard.py)")
    floor_tolerance: float = option(0.02, "how far under the floor one probe reading may fall before a rollback")
    rollback_backoff: float = option(0.5, "after a rollback, alpha stays under this fraction of the alpha that "
                                          "left the restored weights")
    rollback_recovery: float = option(0.05, "after a rollback, that ceiling rises by this much each step the probe "
                                            "holds the floor, back to alpha_max")

    def __post_init__(self) -> None:
        if self.target_tokens is not None and self.target_token_ratio is not None:
            raise ValueError("target_tokens and target_token_ratio: give one of them")
        if self.accuracy_floor is not None and self.accuracy_drop is not None:
            raise ValueError("accuracy_floor and accuracy_drop: give one of them")
        check_positive(self, "target_tokens", "target_token_ratio", "reference_steps", "controller_step_size",
                       "accuracy_step_size", "controller_probe_temperature")
        if not 0.0 <= self.floor_tolerance < 1.0:
            raise ValueError(f"floor_tolerance must be in [0, 1), got {self.floor_tolerance}")
        if self.rollback_recovery < 0:
            raise ValueError(f"rollback_recovery must be >= 0, got {self.rollback_recovery}")
        if not 0.0 <= self.rollback_backoff < 1.0:
            raise ValueError(f"rollback_backoff must be in [0, 1), got {self.rollback_backoff}")
        if self.controller_probe_prompts < 0:
            raise ValueError(f"controller_probe_prompts must be >= 0, got {self.controller_probe_prompts}")
        if self.accuracy_floor is not None and not 0.0 <= self.accuracy_floor <= 1.0:
            raise ValueError(f"accuracy_floor must be in [0, 1], got {self.accuracy_floor}")
        if self.accuracy_drop is not None and not 0.0 <= self.accuracy_drop <= 1.0:
            raise ValueError(f"accuracy_drop must be in [0, 1], got {self.accuracy_drop}")
        if not 0.0 <= self.controller_ema < 1.0:
            raise ValueError(f"controller_ema must be in [0, 1), got {self.controller_ema}")
        if not 0.0 < self.alpha_max < 1.0:
            raise ValueError(f"alpha_max must be in (0, 1), got {self.alpha_max}")
        if not 0.0 <= self.initial_alpha <= self.alpha_max:
            raise ValueError(f"initial_alpha must be in [0, alpha_max={self.alpha_max}], got {self.initial_alpha}")
        for name in ("controller_kp", "accuracy_kp", "controller_kd", "accuracy_kd"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def enabled(self) -> bool:
        return any(value is not None for value in (self.target_tokens, self.target_token_ratio, self.accuracy_floor,
                                                  self.accuracy_drop))


@dataclass
class ControllerState:
    alpha: float
    steps: int = 0
    ema_tokens: float | None = None
    ema_accuracy: float | None = None
    target_tokens: float | None = None  # resolved target (from target_token_ratio after the first step)
    accuracy_floor: float | None = None  # resolved floor (from accuracy_drop after reference_steps)
    reference_accuracy_sum: float = 0.0
    integral: float | None = None  # the integral term (None: a state saved before the proportional term: alpha)
    token_violation: float | None = None  # the last step's g_T and g_A, for the derivative terms
    accuracy_slack: float | None = None
    alpha_ceiling: float | None = None  # after a rollback: rollback_backoff x the alpha that left the restored weights
    rollbacks: int = 0


class AlphaController:
    """`update(mean_tokens, accuracy)` after each rollout step -> the alpha of the next step."""

    def __init__(self, config: ControllerConfig, state: dict[str, Any] | None = None):
        if not config.enabled:
            raise ValueError("AlphaController needs target_tokens, target_token_ratio, accuracy_floor or accuracy_drop")
        self.config = config
        self.state = ControllerState(**state) if state is not None else ControllerState(
            alpha=config.initial_alpha, integral=config.initial_alpha, target_tokens=config.target_tokens,
            accuracy_floor=config.accuracy_floor)

    @property
    def alpha(self) -> float:
        return self.state.alpha

    def state_dict(self) -> dict[str, Any]:
        return asdict(self.state)

    def update(self, mean_tokens: float, accuracy: float) -> float:
        config, state = self.config, self.state
        state.steps += 1
        smoothing = config.controller_ema
        state.ema_tokens = mean_tokens if state.ema_tokens is None else (
            smoothing * state.ema_tokens + (1 - smoothing) * mean_tokens)
        state.ema_accuracy = accuracy if state.ema_accuracy is None else (
            smoothing * state.ema_accuracy + (1 - smoothing) * accuracy)
        if config.target_token_ratio is not None and state.target_tokens is None:
            state.target_tokens = config.target_token_ratio * mean_tokens  # step 1: the base model's rollouts
        if config.accuracy_drop is not None and state.accuracy_floor is None:
            state.reference_accuracy_sum += accuracy
            if state.steps < config.reference_steps:
                return state.alpha  # still measuring the reference accuracy: alpha stays where it started
            state.accuracy_floor = state.reference_accuracy_sum / config.reference_steps - config.accuracy_drop
        if state.alpha_ceiling is not None and self.floor_reading(accuracy) == "holds":  # additive increase
            state.alpha_ceiling = min(state.alpha_ceiling + config.rollback_recovery, config.alpha_max)
        violation, change, integral_gain, proportional_gain, derivative_gain = self._violation()
        integral = state.alpha if state.integral is None else state.integral
        ceiling = config.alpha_max if state.alpha_ceiling is None else state.alpha_ceiling  # <= alpha_max
        state.integral = min(max(integral + integral_gain * violation, 0.0), ceiling)  # no windup
        alpha = state.integral + proportional_gain * violation + derivative_gain * change
        state.alpha = min(max(alpha, 0.0), ceiling)
        return state.alpha

    def floor_reading(self, accuracy: float) -> str | None:
        """What one probe reading says of the weights it sampled: "holds" (at or over the floor), "breaks" (more
        than floor_tolerance under it), None (in between, no floor yet, or no rollback asked for)."""
        floor = self.state.accuracy_floor
        if floor is None or not self.config.floor_rollback:
            return None
        if accuracy >= floor:
            return "holds"
        return "breaks" if accuracy < floor - self.config.floor_tolerance else None

    def roll_back(self, saved: dict[str, Any]) -> None:
        """The learners went back to weights whose probe held the floor: the controller goes back to its state
        of then (`saved`, its EMAs and integral), with alpha capped at rollback_backoff x the alpha that left
        them; each later step whose probe holds the floor raises that ceiling by rollback_recovery. The ceiling is
        TCP's congestion window (additive increase, multiplicative decrease): a rollback on a dip that alpha did
        not cause (the probe's noise, a transient) costs some steps, not the rest of the run (at seed 0 a fixed
        ceiling held alpha at 0.13 from step 4 on; docs/controller.md). Departure from A-DLP, which only lowers
        alpha: on the built-in task a policy that has learned to box the hint does not unlearn it at alpha 0
        within a run (docs/controller.md), so lowering alpha after the drop is too late; the steps since are
        spent, and counted (`steps`)."""
        restored = ControllerState(**saved)
        ceiling = self.config.rollback_backoff * restored.alpha
        if self.state.alpha_ceiling is not None:
            ceiling = min(ceiling, self.state.alpha_ceiling)
        restored.alpha_ceiling, restored.rollbacks, restored.steps = ceiling, self.state.rollbacks + 1, self.state.steps
        restored.alpha = min(restored.alpha, ceiling)
        restored.integral = min(restored.alpha if restored.integral is None else restored.integral, ceiling)
        self.state = restored

    def _violation(self) -> tuple[float, float, float, float, float]:
        """(g, g - g_prev, K_i, K_p, K_d) of the constraint that drives alpha now; both g are remembered."""
        config, state = self.config, self.state
        token = None if state.target_tokens is None else state.ema_tokens / state.target_tokens - 1.0
        floor = None if state.accuracy_floor is None else state.ema_accuracy - state.accuracy_floor
        token_change = 0.0 if token is None or state.token_violation is None else token - state.token_violation
        floor_change = 0.0 if floor is None or state.accuracy_slack is None else floor - state.accuracy_slack
        state.token_violation, state.accuracy_slack = token, floor
        if token is not None and (floor is None or floor >= 0):
            return token, token_change, config.controller_step_size, config.controller_kp, config.controller_kd
        return floor, floor_change, config.accuracy_step_size, config.accuracy_kp, config.accuracy_kd

    def metrics(self) -> dict[str, float]:
        """What the run logs every step (metrics.jsonl, job log, dashboard)."""
        state = self.state
        values = {"controller/alpha": state.alpha, "controller/ema_tokens": state.ema_tokens,
                  "controller/ema_accuracy": state.ema_accuracy, "controller/target_tokens": state.target_tokens,
                  "controller/accuracy_floor": state.accuracy_floor, "controller/integral": state.integral,
                  "controller/alpha_ceiling": state.alpha_ceiling, "controller/rollbacks": state.rollbacks}
        if state.target_tokens is not None and state.ema_tokens is not None:
            values["controller/token_violation"] = state.ema_tokens / state.target_tokens - 1.0
        if state.accuracy_floor is not None and state.ema_accuracy is not None:
            values["controller/accuracy_slack"] = state.ema_accuracy - state.accuracy_floor
        return {key: float(value) for key, value in values.items() if value is not None}
