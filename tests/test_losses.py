"""PPO-clip loss against a slow loop reference (values and float64 gradients), metrics, KL helpers."""

import math

import pytest
import torch

from ray_effreason.losses import kl_penalized_advantages, policy_loss, token_logprobs

AGGREGATIONS = ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"]
NORM_TOKENS = 8


def make_batch(seed, N=4, T=6, per_token_advantages=False):
    """float64 inputs with ratios well outside [0.8, 1.2] and garbage (inf/NaN) on padding."""
    generator = torch.Generator().manual_seed(seed)
    logprobs = -torch.rand(N, T, generator=generator, dtype=torch.float64) * 3
    old_logprobs = logprobs + 0.5 * torch.randn(N, T, generator=generator, dtype=torch.float64)
    ref_logprobs = logprobs + 0.3 * torch.randn(N, T, generator=generator, dtype=torch.float64)
    lengths = torch.tensor([T, 3, 1, 0][:N])  # one full, two partial, one without valid tokens
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (N, T) bool
    shape = (N, T) if per_token_advantages else (N,)
    advantages = torch.randn(*shape, generator=generator, dtype=torch.float64)
    logprobs = logprobs.masked_fill(~mask, -math.inf)
    old_logprobs = old_logprobs.masked_fill(~mask, float("nan"))
    return logprobs, old_logprobs, advantages, mask, ref_logprobs


def reference_loss(logprobs, old_logprobs, advantages, mask, clip_low, clip_high, aggregation, ref_logprobs, kl_coef):
    """Explicit loops over sequences and tokens; the definition each aggregation mode stands for."""
    clip_high = clip_low if clip_high is None else clip_high
    N, T = logprobs.shape
    sequence_sums, sequence_counts = [], []
    for i in range(N):
        total, count = torch.zeros((), dtype=torch.float64), 0
        for t in range(T):
            if not mask[i, t]:
                continue
            advantage = advantages[i] if advantages.ndim == 1 else advantages[i, t]
            ratio = torch.exp(logprobs[i, t] - old_logprobs[i, t])
            clipped_ratio = torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
            token = -torch.min(ratio * advantage, clipped_ratio * advantage)
            if kl_coef:
                log_r = ref_logprobs[i, t] - logprobs[i, t]
                token = token + kl_coef * (torch.exp(log_r) - log_r - 1)
            total, count = total + token, count + 1
        sequence_sums.append(total)
        sequence_counts.append(count)
    if aggregation == "seq-mean-token-mean":
        return sum(s / max(c, 1) for s, c in zip(sequence_sums, sequence_counts)) / N
    if aggregation == "token-mean":
        return sum(sequence_sums) / sum(sequence_counts)
    return sum(s / NORM_TOKENS for s in sequence_sums) / N


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("clip_high", [None, 0.28])
@pytest.mark.parametrize("kl_coef", [0.0, 0.1])
@pytest.mark.parametrize("per_token_advantages", [False, True])
def test_policy_loss_value_and_gradient_match_loop_reference(aggregation, clip_high, kl_coef, per_token_advantages):
    logprobs, old_logprobs, advantages, mask, ref_logprobs = make_batch(0, per_token_advantages=per_token_advantages)
    logprobs.requires_grad_(True)
    loss, metrics = policy_loss(
        logprobs,
        old_logprobs,
        advantages,
        mask,
        clip_high=clip_high,
        aggregation=aggregation,
        ref_logprobs=ref_logprobs,
        kl_coef=kl_coef,
        norm_tokens=NORM_TOKENS,  # the other modes ignore it (the learner always passes max_new_tokens)
    )
    expected = reference_loss(
        logprobs, old_logprobs, advantages, mask, 0.2, clip_high, aggregation, ref_logprobs, kl_coef
    )
    (gradient,) = torch.autograd.grad(loss, logprobs)
    (expected_gradient,) = torch.autograd.grad(expected, logprobs)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(gradient).all() and (gradient[~mask] == 0).all()
    assert metrics["loss"] == pytest.approx(loss.item())
    assert 0 < metrics["clip_fraction"] < 1  # the batch does exercise clipping


def test_policy_loss_clip_higher_relaxes_only_the_upper_clip():
    # ratio 1.25 with A = +1: clipped at 1.2 (symmetric) but not at 1.28; ratio 0.7 with A = -1:
    # clipped at 0.8 either way.
    old_logprobs = torch.zeros(1, 2)
    logprobs = torch.tensor([[1.25, 0.7]]).log()
    advantages = torch.tensor([[1.0, -1.0]])
    mask = torch.ones(1, 2)
    symmetric, symmetric_metrics = policy_loss(logprobs, old_logprobs, advantages, mask, aggregation="token-mean")
    higher, higher_metrics = policy_loss(
        logprobs, old_logprobs, advantages, mask, aggregation="token-mean", clip_high=0.28
    )
    assert symmetric.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert higher.item() == pytest.approx((-1.25 + 0.8) / 2)
    assert symmetric_metrics["clip_fraction"] == 1.0 and higher_metrics["clip_fraction"] == 0.5


def test_policy_loss_clip_fraction_on_constructed_case():
    # ratio, advantage -> clipped term active?  1.5,+1 yes | 1.5,-1 no | 0.5,-1 yes | 0.5,+1 no | 1.0,+1 no
    ratios = torch.tensor([[1.5, 1.5, 0.5, 0.5, 1.0, 9.0]])
    advantages = torch.tensor([[1.0, -1.0, -1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])  # the padded 9.0 ratio must not count
    old_logprobs = torch.full((1, 6), -2.0)
    logprobs = old_logprobs + ratios.log()
    loss, metrics = policy_loss(logprobs, old_logprobs, advantages, mask, aggregation="token-mean")
    assert metrics["clip_fraction"] == pytest.approx(2 / 5)
    assert metrics["ratio_mean"] == pytest.approx((1.5 + 1.5 + 0.5 + 0.5 + 1.0) / 5)
    assert metrics["ratio_max"] == pytest.approx(1.5)
    # token losses: -1.2, 1.5, 0.8, -0.5, -1.0
    assert loss.item() == pytest.approx((-1.2 + 1.5 + 0.8 - 0.5 - 1.0) / 5)
    approx_kl = sum(r - 1 - math.log(r) for r in [1.5, 1.5, 0.5, 0.5, 1.0]) / 5
    assert metrics["approx_kl"] == pytest.approx(approx_kl, rel=1e-5)
    _, symmetric_high = policy_loss(logprobs, old_logprobs, advantages, mask, clip_high=0.6)
    assert symmetric_high["clip_fraction"] == pytest.approx(1 / 5)  # 1.5 < 1.6: only the 0.5 token clips


def test_policy_loss_kl_to_ref_metric_is_k3_mean_over_valid_tokens():
    logprobs = torch.tensor([[-1.0, -2.0, -3.0]])
    ref_logprobs = torch.tensor([[-1.5, -2.0, 50.0]])
    mask = torch.tensor([[True, True, False]])
    _, metrics = policy_loss(logprobs, logprobs, torch.tensor([0.0]), mask, ref_logprobs=ref_logprobs)
    assert metrics["kl_to_ref"] == pytest.approx((math.exp(-0.5) + 0.5 - 1 + 0.0) / 2, rel=1e-6)
    _, without_ref = policy_loss(logprobs, logprobs, torch.tensor([0.0]), mask)
    assert "kl_to_ref" not in without_ref


def test_policy_loss_metrics_are_python_floats():
    logprobs, old_logprobs, advantages, mask, ref_logprobs = make_batch(2)
    _, metrics = policy_loss(logprobs.requires_grad_(True), old_logprobs, advantages, mask, ref_logprobs=ref_logprobs)
    assert set(metrics) == {"clip_fraction", "approx_kl", "kl_to_ref", "ratio_mean", "ratio_max", "loss"}
    assert all(type(value) is float for value in metrics.values())


def test_policy_loss_float_mask_equals_bool_mask():
    logprobs, old_logprobs, advantages, mask, _ = make_batch(3)
    as_bool, _ = policy_loss(logprobs, old_logprobs, advantages, mask)
    as_float, _ = policy_loss(logprobs, old_logprobs, advantages, mask.double())
    assert as_bool.item() == as_float.item()


def test_policy_loss_does_not_mutate_inputs():
    batch = make_batch(4)
    copies = [tensor.clone() for tensor in batch]
    policy_loss(*batch[:4], ref_logprobs=batch[4], kl_coef=0.1, aggregation="token-mean")
    kl_penalized_advantages(batch[2], batch[0], batch[4], batch[3], 0.1)
    for tensor, copy in zip(batch, copies):
        torch.testing.assert_close(tensor, copy, equal_nan=True)


def test_policy_loss_bf16_inputs_computed_in_float32():
    logprobs, old_logprobs, advantages, mask, _ = make_batch(5)
    loss, _ = policy_loss(logprobs.bfloat16(), old_logprobs.bfloat16(), advantages.bfloat16(), mask)
    assert loss.dtype == torch.float32


def test_seq_mean_token_mean_favours_short_correct_answers_token_sum_norm_does_not():
    # Dr. GRPO's point: two correct answers with the same advantage, 2 and 6 tokens. The per-sequence
    # mean gives each token of the short answer 3x the push; a constant divisor gives equal pushes.
    logprobs = torch.full((2, 6), -1.0, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    advantages = torch.tensor([1.0, 1.0])
    gradients = {}
    for aggregation in ["seq-mean-token-mean", "seq-mean-token-sum-norm"]:
        norm = 6 if aggregation == "seq-mean-token-sum-norm" else None
        loss, _ = policy_loss(logprobs, logprobs.detach(), advantages, mask, aggregation=aggregation, norm_tokens=norm)
        (gradients[aggregation],) = torch.autograd.grad(loss, logprobs)
    per_mean = gradients["seq-mean-token-mean"]
    assert per_mean[0, 0].item() == pytest.approx(3 * per_mean[1, 0].item())
    per_norm = gradients["seq-mean-token-sum-norm"]
    assert per_norm[0, 0].item() == pytest.approx(per_norm[1, 0].item())


def test_policy_loss_no_valid_tokens_gives_zero_loss_and_nan_metrics():
    logprobs = torch.zeros(2, 3, requires_grad=True)
    loss, metrics = policy_loss(logprobs, logprobs.detach(), torch.ones(2), torch.zeros(2, 3), aggregation="token-mean")
    assert loss.item() == 0.0
    assert math.isnan(metrics["clip_fraction"]) and math.isnan(metrics["ratio_max"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"aggregation": "seq-mean"}, "seq-mean-token-mean.*token-mean.*seq-mean-token-sum-norm"),
        ({"aggregation": "seq-mean-token-sum-norm"}, "norm_tokens"),
        ({"aggregation": "seq-mean-token-sum-norm", "norm_tokens": 0}, "norm_tokens"),
        ({"kl_coef": 0.1}, "ref_logprobs"),
        ({"kl_estimator": "k4"}, "k1.*k2.*k3"),
        ({"clip_low": 1.0}, "clip_low"),
        ({"clip_high": 0.0}, "clip_high"),
        ({"kl_coef": -1.0}, "kl_coef"),
    ],
)
def test_policy_loss_bad_arguments_raise(kwargs, match):
    logprobs, old_logprobs, advantages, mask, _ = make_batch(6)
    with pytest.raises(ValueError, match=match):
        policy_loss(logprobs, old_logprobs, advantages, mask, **kwargs)


def test_policy_loss_bad_shapes_raise():
    logprobs, old_logprobs, advantages, mask, _ = make_batch(7)
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(logprobs, old_logprobs, advantages[:2], mask)
    with pytest.raises(ValueError, match="mask"):
        policy_loss(logprobs, old_logprobs, advantages, mask[:, :2])


def test_kl_penalized_advantages_match_loop_reference():
    logprobs, _, advantages, mask, ref_logprobs = make_batch(8)
    logprobs = logprobs.masked_fill(~mask, 0.0)
    kl_coef = 1e-3 * 50
    result = kl_penalized_advantages(advantages, logprobs, ref_logprobs, mask, kl_coef)
    N, T = logprobs.shape
    expected = torch.zeros(N, T, dtype=torch.float64)
    for i in range(N):
        for t in range(T):
            if mask[i, t]:
                future = sum(logprobs[i, s] - ref_logprobs[i, s] for s in range(t, T) if mask[i, s])
                expected[i, t] = advantages[i] - kl_coef * future
    torch.testing.assert_close(result, expected, rtol=1e-12, atol=1e-12)
    assert not result.requires_grad


def test_kl_penalized_advantages_then_policy_loss_is_the_paper_pipeline():
    # PAPER §1.4: k1 KL in the reward (coefficient 1e-3), then PPO-clip with no KL loss term.
    logprobs, old_logprobs, advantages, mask, ref_logprobs = make_batch(9)
    old_logprobs = old_logprobs.masked_fill(~mask, 0.0)
    per_token = kl_penalized_advantages(advantages, old_logprobs, ref_logprobs, mask, kl_coef=1e-3)
    loss, _ = policy_loss(logprobs.requires_grad_(True), old_logprobs, per_token, mask, kl_estimator=None)
    loss.backward()
    assert torch.isfinite(logprobs.grad).all()
    zero_kl = kl_penalized_advantages(advantages, old_logprobs, old_logprobs, mask, kl_coef=1e-3)
    torch.testing.assert_close(zero_kl, torch.where(mask, advantages[:, None], 0.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_logprobs_match_full_log_softmax_in_float32(dtype):
    generator = torch.Generator().manual_seed(10)
    logits = (3 * torch.randn(3, 5, 11, generator=generator)).to(dtype).requires_grad_(True)
    targets = torch.randint(0, 11, (3, 5), generator=generator)
    result = token_logprobs(logits, targets)
    expected = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    assert result.dtype == torch.float32 and result.shape == (3, 5)
    torch.testing.assert_close(result, expected, rtol=1e-6, atol=1e-6)
    (gradient,) = torch.autograd.grad(result.sum(), logits)
    (expected_gradient,) = torch.autograd.grad(expected.sum(), logits)
    torch.testing.assert_close(gradient, expected_gradient)


def test_token_logprobs_float64_gradient_check():
    logits = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[0, 1, 3], [2, 2, 0]])
    assert torch.autograd.gradcheck(lambda x: token_logprobs(x, targets), (logits,))


def test_token_logprobs_bad_shapes_raise():
    with pytest.raises(ValueError, match="targets"):
        token_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))
