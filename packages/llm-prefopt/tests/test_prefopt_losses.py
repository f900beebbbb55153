"""Every loss against a naive reference written here independently: plain Python floats, one pair
(or row, or token) at a time, straight from the papers' equations."""

from __future__ import annotations

import math
import random

import pytest

torch = pytest.importorskip("torch")

from llm_prefopt import kto, losses, ppo, reward_model  # noqa: E402


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def batch(seed: int = 0, pairs: int = 5, width: int = 9):
    """Interleaved rows: random per-token log-probs, completion masks of random lengths."""
    g = torch.Generator().manual_seed(seed)
    logprobs = -torch.rand(2 * pairs, width, generator=g, dtype=torch.float64) * 2
    mask = torch.zeros(2 * pairs, width, dtype=torch.float64)
    for i in range(2 * pairs):
        start = int(torch.randint(0, 3, (1,), generator=g))
        length = int(torch.randint(1, width - start, (1,), generator=g))
        mask[i, start:start + length] = 1
    logprobs = logprobs * mask  # 0 where ignored, as the engine gives them
    ref = -torch.rand(2 * pairs, generator=g, dtype=torch.float64) * 6
    return logprobs, mask, ref


def sequences(logprobs, mask):
    """Per row: summed log-prob and token count, by loops."""
    sums, counts = [], []
    for i in range(logprobs.shape[0]):
        sums.append(sum(float(logprobs[i, t]) for t in range(logprobs.shape[1]) if mask[i, t] > 0))
        counts.append(sum(1 for t in range(mask.shape[1]) if mask[i, t] > 0))
    return sums, counts


def naive_pair_loss(kind: str, logprobs, mask, ref, beta=0.1, eps=0.2, gamma=1.0, sft_weight=0.0) -> float:
    sums, counts = sequences(logprobs, mask)
    per_pair = []
    for p in range(len(sums) // 2):
        c, r = 2 * p, 2 * p + 1
        lr_c, lr_r = sums[c] - float(ref[c]), sums[r] - float(ref[r])
        avg_c, avg_r = sums[c] / counts[c], sums[r] / counts[r]
        if kind == "dpo":
            per_pair.append(-logsig(beta * (lr_c - lr_r)))
        elif kind == "ipo":
            per_pair.append((lr_c / counts[c] - lr_r / counts[r] - 1 / (2 * beta)) ** 2)
        elif kind == "hinge":
            per_pair.append(max(0.0, 1 - beta * (lr_c - lr_r)))
        elif kind == "robust":
            d = beta * (lr_c - lr_r)
            per_pair.append(((1 - eps) * -logsig(d) - eps * -logsig(-d)) / (1 - 2 * eps))
        elif kind == "simpo":
            per_pair.append(-logsig(beta * (avg_c - avg_r) - gamma))
        elif kind == "orpo":
            odds_c = math.log(math.exp(avg_c) / (1 - math.exp(avg_c)))
            odds_r = math.log(math.exp(avg_r) / (1 - math.exp(avg_r)))
            per_pair.append(-beta * logsig(odds_c - odds_r))
    loss = sum(per_pair) / len(per_pair)
    chosen_tokens = [float(logprobs[i, t]) for i in range(0, len(sums), 2) for t in range(mask.shape[1])
                     if mask[i, t] > 0]
    nll = -sum(chosen_tokens) / len(chosen_tokens)
    if kind == "orpo":
        loss += nll
    return loss + sft_weight * nll


CONFIGS = {"dpo": losses.DpoConfig(beta=0.1), "ipo": losses.IpoConfig(beta=0.1),
           "hinge": losses.HingeConfig(beta=0.1), "robust": losses.RobustConfig(beta=0.1, label_smoothing=0.2),
           "simpo": losses.SimpoConfig(beta=0.1, gamma=1.0), "orpo": losses.OrpoConfig(beta=0.1)}


@pytest.mark.parametrize("kind", sorted(CONFIGS))
@pytest.mark.parametrize("sft_weight", [0.0, 0.5])
def test_pairwise_losses_match_the_papers(kind, sft_weight):
    for seed in range(3):
        logprobs, mask, ref = batch(seed)
        config = CONFIGS[kind].model_copy(update={"sft_weight": sft_weight})
        loss, metrics = losses.PairwiseLoss(config, kind)(logprobs, mask, ref)
        expected = naive_pair_loss(kind, logprobs, mask, ref, sft_weight=sft_weight)
        assert float(loss) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert 0.0 <= float(metrics["rewards/accuracies"]) <= 1.0


def test_implicit_reward_metrics_are_beta_times_log_ratios():
    logprobs, mask, ref = batch(1)
    _, metrics = losses.PairwiseLoss(losses.DpoConfig(beta=0.5), "dpo")(logprobs, mask, ref)
    sums, _ = sequences(logprobs, mask)
    chosen = [0.5 * (sums[i] - float(ref[i])) for i in range(0, len(sums), 2)]
    rejected = [0.5 * (sums[i] - float(ref[i])) for i in range(1, len(sums), 2)]
    assert float(metrics["rewards/chosen"]) == pytest.approx(sum(chosen) / len(chosen))
    pairs = list(zip(chosen, rejected, strict=True))
    assert float(metrics["rewards/margins"]) == pytest.approx(sum(c - r for c, r in pairs) / 5)
    assert float(metrics["rewards/accuracies"]) == pytest.approx(sum(c > r for c, r in pairs) / 5)


def test_pairwise_losses_give_gradients_and_reject_bad_batches():
    logprobs, mask, ref = batch(2)
    logprobs.requires_grad_(True)
    loss, _ = losses.PairwiseLoss(losses.DpoConfig(), "dpo")(logprobs, mask, ref)
    loss.backward()
    assert logprobs.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="even number"):
        losses.PairwiseLoss(losses.DpoConfig(), "dpo")(logprobs[:3], mask[:3], ref[:3])
    with pytest.raises(ValueError, match="ref_logps"):
        losses.PairwiseLoss(losses.DpoConfig(), "dpo")(logprobs, mask)


def test_log1mexp_is_stable_on_both_sides():
    x = torch.tensor([-1e-9, -0.1, -0.69, -0.7, -5.0, -50.0], dtype=torch.float64)
    expected = [math.log(-math.expm1(float(v))) for v in x]
    assert losses.log1mexp(x).tolist() == pytest.approx(expected, rel=1e-9)


def test_kto_matches_the_paper():
    g = torch.Generator().manual_seed(3)
    rows = 6
    logprobs = -torch.rand(rows, 7, generator=g, dtype=torch.float64)
    mask = (torch.rand(rows, 7, generator=g) > 0.3).double()
    mask[:, 0] = 1
    logprobs = logprobs * mask
    desirable = torch.tensor([1.0, 0, 1, 1, 0, 0], dtype=torch.float64)
    ref, kl_lp, ref_kl = (-torch.rand(rows, generator=g, dtype=torch.float64) * 4 for _ in range(3))
    config = kto.KtoConfig(beta=0.3, desirable_weight=1.2, undesirable_weight=0.8)
    loss, metrics = kto.KtoLoss(config)(logprobs, mask, desirable, ref, kl_lp, ref_kl)
    sums, _ = sequences(logprobs, mask)
    z0 = max(0.0, sum(float(a - b) for a, b in zip(kl_lp, ref_kl, strict=True)) / rows)
    expected = []
    for i in range(rows):
        r = sums[i] - float(ref[i])
        sigmoid = 1 / (1 + math.exp(-0.3 * ((r - z0) if desirable[i] else (z0 - r))))
        expected.append((1.2 if desirable[i] else 0.8) * (1 - sigmoid))
    assert float(loss) == pytest.approx(sum(expected) / rows, rel=1e-9)
    assert float(metrics["kl"]) == pytest.approx(z0)


def test_kto_reference_point_is_clamped_at_zero_and_detached():
    kl_lp = torch.tensor([-5.0, -6.0], requires_grad=True)
    z0 = kto.reference_point(kl_lp, torch.tensor([-1.0, -1.0]))
    assert float(z0) == 0.0 and not z0.requires_grad


def test_kto_class_balance_advice():
    config = kto.KtoConfig()
    assert kto.check_class_balance(10, 10, config) is None
    assert "recommends" in kto.check_class_balance(30, 10, config)


def test_bradley_terry_matches_the_formula():
    values = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    last = torch.tensor([4, 2, 3, 3, 1, 4])
    margin = torch.tensor([0.5, 0.5, 0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    config = reward_model.BradleyTerryConfig(center_coef=0.01)
    loss, metrics = reward_model.BradleyTerryLoss(config)(values, last, margin)
    r = [float(values[i, last[i]]) for i in range(6)]
    pairs = [(r[0], r[1], 0.5), (r[2], r[3], 0.0), (r[4], r[5], 1.0)]
    expected = sum(-logsig(c - j - m) for c, j, m in pairs) / 3 + 0.01 * sum((c + j) ** 2 for c, j, _ in pairs) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-6)  # rewards are taken in fp32, as the engine's values
    assert float(metrics["accuracy"]) == pytest.approx(sum(c > j for c, j, _ in pairs) / 3)


def naive_gae(rewards, values, gamma, lam):
    """One sequence of completion tokens: delta_t = r_t + gamma V_{t+1} - V_t, A_t = sum (gamma lam)^k delta."""
    n = len(rewards)
    advantages = []
    for t in range(n):
        total = 0.0
        for k in range(t, n):
            next_value = values[k + 1] if k + 1 < n else 0.0
            delta = rewards[k] + gamma * next_value - values[k]
            total += (gamma * lam) ** (k - t) * delta
        advantages.append(total)
    return advantages, [a + v for a, v in zip(advantages, values, strict=True)]


def test_gae_and_token_rewards_match_a_naive_loop():
    rng = random.Random(0)
    width, rows = 8, 3
    mask = torch.zeros(rows, width, dtype=torch.float64)
    spans = [(2, 7), (1, 4), (3, 8)]
    for i, (a, b) in enumerate(spans):
        mask[i, a:b] = 1
    logp = torch.tensor([[rng.uniform(-2, 0) for _ in range(width)] for _ in range(rows)], dtype=torch.float64)
    ref = torch.tensor([[rng.uniform(-2, 0) for _ in range(width)] for _ in range(rows)], dtype=torch.float64)
    values = torch.tensor([[rng.uniform(-1, 1) for _ in range(width)] for _ in range(rows)], dtype=torch.float64)
    scores = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    rewards, _ = ppo.token_rewards(scores, logp, ref, mask, kl_coef=0.1)
    advantages, returns = ppo.gae(rewards, values * mask, mask, gamma=0.99, lam=0.9)
    for i, (a, b) in enumerate(spans):
        per_token = [-0.1 * (float(logp[i, t]) - float(ref[i, t])) for t in range(a, b)]
        per_token[-1] += float(scores[i])
        assert rewards[i, a:b].tolist() == pytest.approx(per_token)
        adv, ret = naive_gae(per_token, [float(values[i, t]) for t in range(a, b)], 0.99, 0.9)
        assert advantages[i, a:b].tolist() == pytest.approx(adv)
        assert returns[i, a:b].tolist() == pytest.approx(ret)
        assert float(advantages[i].abs().sum() - advantages[i, a:b].abs().sum()) == 0.0


def test_ppo_loss_matches_a_naive_loop():
    g = torch.Generator().manual_seed(5)
    shape = (4, 6)
    logp, old, adv, ret = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.3 for _ in range(4))
    values, old_values = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(2))
    mask = (torch.rand(shape, generator=g) > 0.3).double()
    loss, metrics = ppo.ppo_loss(logp, values, mask, old, old_values, adv, ret, clip_eps=0.2, value_clip=0.2,
                                 vf_coef=0.1)
    pg, vf, n = 0.0, 0.0, 0
    for i in range(shape[0]):
        for t in range(shape[1]):
            if mask[i, t] == 0:
                continue
            n += 1
            ratio = math.exp(float(logp[i, t] - old[i, t]))
            a = float(adv[i, t])
            pg += max(-a * ratio, -a * min(max(ratio, 0.8), 1.2))
            v, v_old, r = float(values[i, t]), float(old_values[i, t]), float(ret[i, t])
            clipped = min(max(v, v_old - 0.2), v_old + 0.2)
            vf += max((v - r) ** 2, (clipped - r) ** 2)
    assert float(loss) == pytest.approx(pg / n + 0.1 * 0.5 * vf / n, rel=1e-6)  # values in fp32, as the engine's
    assert float(metrics["pg_loss"]) == pytest.approx(pg / n, rel=1e-9)


def test_masked_whiten():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    w = ppo.masked_whiten(x, mask)
    assert w[0, :3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)  # unbiased std of 1, 2, 3 is 1
    assert ppo.masked_whiten(x, mask, shift_mean=False)[0, :3].tolist() == pytest.approx([1.0, 2.0, 3.0], abs=1e-6)


def test_adaptive_kl_controller_moves_toward_the_target_and_saves_its_state():
    controller = ppo.KlController(ppo.KlControl(kind="adaptive", kl_coef=0.1, target=1.0, horizon=100), batch=10)
    controller.on_step(0, {"kl": 3.0}, None)  # far above: the error is clipped at +0.2
    assert controller.value == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    controller.on_step(1, {"kl": 0.5}, None)
    assert controller.value == pytest.approx(0.1 * 1.02 * (1 - 0.2 * 10 / 100))
    other = ppo.KlController(ppo.KlControl(kind="adaptive"), batch=10)
    other.load_state_dict(controller.state_dict())
    assert other.value == controller.value
    fixed = ppo.KlController(ppo.KlControl(kl_coef=0.05), batch=10)
    fixed.on_step(0, {"kl": 50.0}, None)
    assert fixed.value == 0.05
