"""SFT and DPO losses against slow loop references: values and float64 gradients."""

import math

import pytest
import torch

from ray_effreason.batching import Sample, preference_micro_batches
from ray_effreason.preference_losses import dpo_loss, sequence_logprobs, sft_loss


def make_logprobs(seed, N=4, T=5):
    """float64 log-probs with -inf/NaN on padding; one full row, partial rows, one empty row."""
    generator = torch.Generator().manual_seed(seed)
    logprobs = -torch.rand(N, T, generator=generator, dtype=torch.float64) * 3
    lengths = torch.tensor([T, 3, 1, 0][:N])
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (N, T)
    garbage = torch.where(torch.arange(T)[None, :] % 2 == 0, -math.inf, math.nan).expand(N, T)
    return torch.where(mask, logprobs, garbage).requires_grad_(True), mask


def reference_sft(logprobs, mask):
    total, count = torch.zeros((), dtype=torch.float64), 0
    for i in range(logprobs.shape[0]):
        for t in range(logprobs.shape[1]):
            if mask[i, t]:
                total, count = total - logprobs[i, t], count + 1
    return total / max(count, 1)


def reference_dpo(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta):
    losses = []
    for pc, pr, rc, rr in zip(policy_chosen, policy_rejected, reference_chosen, reference_rejected):
        margin = beta * ((pc - rc) - (pr - rr))
        losses.append(-torch.log(1 / (1 + torch.exp(-margin))))
    return sum(losses) / len(losses)


def test_sft_loss_matches_loop_reference_and_its_gradient():
    logprobs, mask = make_logprobs(0)
    loss, metrics = sft_loss(logprobs, mask)
    (gradient,) = torch.autograd.grad(loss, logprobs)
    expected = reference_sft(logprobs, mask)
    (expected_gradient,) = torch.autograd.grad(expected, logprobs)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.isfinite(gradient).all()
    torch.testing.assert_close(gradient, torch.where(mask, expected_gradient, torch.zeros_like(gradient)))
    assert metrics["tokens"] == 5 + 3 + 1
    torch.testing.assert_close(gradient[mask], torch.full((9,), -1 / 9, dtype=torch.float64))


def test_sft_loss_no_tokens_is_zero_not_nan():
    loss, _ = sft_loss(torch.full((2, 3), math.nan, dtype=torch.float64, requires_grad=True), torch.zeros(2, 3))
    assert loss.item() == 0.0


@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0])
def test_dpo_loss_matches_loop_reference_and_its_gradient(beta):
    generator = torch.Generator().manual_seed(1)
    sums = [-20 * torch.rand(6, generator=generator, dtype=torch.float64) for _ in range(4)]
    policy_chosen, policy_rejected = (value.clone().requires_grad_(True) for value in sums[:2])
    loss, metrics = dpo_loss(policy_chosen, policy_rejected, sums[2], sums[3], beta)
    gradients = torch.autograd.grad(loss, (policy_chosen, policy_rejected))
    expected = reference_dpo(policy_chosen, policy_rejected, sums[2], sums[3], beta)
    expected_gradients = torch.autograd.grad(expected, (policy_chosen, policy_rejected))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    for gradient, expected_gradient in zip(gradients, expected_gradients):
        torch.testing.assert_close(gradient, expected_gradient)
    margins = beta * ((sums[0] - sums[2]) - (sums[1] - sums[3]))
    assert metrics["reward_accuracy"] == pytest.approx(float((margins > 0).double().mean()))


def test_dpo_gradient_raises_chosen_and_lowers_rejected_and_ignores_reference():
    policy = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    rejected = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    reference = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    loss, _ = dpo_loss(policy, rejected, reference, reference, beta=0.5)
    loss.backward()
    assert (policy.grad < 0).all() and (rejected.grad > 0).all()  # descent raises chosen, lowers rejected
    assert reference.grad is None  # frozen: detached inside
    torch.testing.assert_close(policy.grad, torch.full((3,), -0.5 * 0.5 / 3, dtype=torch.float64))


def test_dpo_rejects_nonpositive_beta():
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=0.0)


def test_sequence_logprobs_from_token_logprobs_of_a_micro_batch():
    chosen, rejected = Sample([5, 6], [7, 8, 9], 0.0), Sample([5, 6], [7], 0.0)
    (batch,) = preference_micro_batches([(chosen, rejected)], size=1, pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]]  # chosen rows first, then rejected
    token_logprobs = -torch.arange(1.0, 5.0).expand(2, 4)  # (2, T-1): position t predicts token t+1
    torch.testing.assert_close(sequence_logprobs(token_logprobs, batch.mask), torch.tensor([-9.0, -2.0]))


# ---------------------------------------------------------------- on the learner group (real Ray, DeepSpeed)

def _learner(model_path, kl_coef):
    import ray

    from ray_effreason.actors.learner import LearnerGroup, LearnerWorker
    from ray_effreason.actors.weight_sync import free_port
    from ray_effreason.config import LearnerConfig, LossConfig

    learner = LearnerConfig(num_learners=1, zero_stage=0, lr=3e-3, warmup_steps=0, train_batch_size=4,
                            micro_batch_size=2)
    worker = ray.remote(LearnerWorker).options(num_cpus=0.5).remote(
        0, 1, "127.0.0.1", free_port(), model_path, learner, LossConfig(kl_coef=kl_coef), 1.0, 24, "cpu", 0)
    return LearnerGroup([worker])




@pytest.mark.ray
@pytest.mark.slow
def test_learner_sft_and_dpo_objectives_move_the_model_their_way(ray_local, tiny_model):
    samples = [Sample([5, 6, 7], [8 + index, 9, 10, 11], 0.0) for index in range(4)]
    sft = _learner(tiny_model, kl_coef=0.0)
    first = sft.train_objective("sft", samples, optimizer_steps=1)
    for _ in range(3):
        last = sft.train_objective("sft", samples, optimizer_steps=1)
    assert first["optimizer_steps"] == 1.0 and last["nll"] < first["nll"] - 0.1, (first, last)

    pairs = [(Sample([5, 6], [9, 9, 9], 0.0), Sample([5, 6], [12, 13, 14, 15, 16], 0.0)) for _ in range(8)]
    dpo = _learner(tiny_model, kl_coef=0.0)  # no KL term: the reference is loaded on DPO's first call
    first = dpo.train_objective("dpo", pairs, optimizer_steps=2, beta=0.5)
    assert first["optimizer_steps"] == 2.0
    last = dpo.train_objective("dpo", pairs, optimizer_steps=2, beta=0.5)
    # the policy starts AS the reference (margin 0); after updates chosen is preferred, increasingly
    assert last["reward_accuracy"] == 1.0 and last["reward_margin"] > first["reward_margin"] > 0, (first, last)
