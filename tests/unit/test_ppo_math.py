"""PPO's pure pieces against straightforward reference computations written here."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from vlexp.algorithms.ppo import gae, masked_whiten, policy_loss, value_loss  # noqa: E402


def reference_gae(rewards: list[float], values: list[float], gamma: float, lam: float):
    """Textbook GAE on one finished episode: delta_t = r_t + gamma V_{t+1} - V_t, V_T = 0."""
    n = len(rewards)
    advantages = []
    for t in range(n):
        total = 0.0
        for k in range(t, n):
            next_value = values[k + 1] if k + 1 < n else 0.0
            delta = rewards[k] + gamma * next_value - values[k]
            total += (gamma * lam) ** (k - t) * delta
        advantages.append(total)
    returns = [a + v for a, v in zip(advantages, values, strict=True)]
    return advantages, returns


def padded(rows: list[list[float]], width: int) -> torch.Tensor:
    return torch.tensor([row + [123.0] * (width - len(row)) for row in rows])  # junk past the end


def test_gae_single_final_reward_matches_reference():
    gamma, lam = 0.99, 0.95
    values = [0.1, -0.2, 0.3, 0.05, 0.4]
    rewards = [0.0, 0.0, 0.0, 0.0, 1.0]
    adv, ret = gae(torch.tensor([rewards]), torch.tensor([values]), torch.ones(1, 5), gamma, lam)
    ref_adv, ref_ret = reference_gae(rewards, values, gamma, lam)
    assert adv[0].tolist() == pytest.approx(ref_adv, abs=1e-6)
    assert ret[0].tolist() == pytest.approx(ref_ret, abs=1e-6)
    # The first advantage, spelled out: sum_k (gamma*lam)^k delta_k.
    deltas = [0.99 * -0.2 - 0.1, 0.99 * 0.3 + 0.2, 0.99 * 0.05 - 0.3, 0.99 * 0.4 - 0.05, 1 - 0.4]
    assert adv[0, 0].item() == pytest.approx(
        sum((gamma * lam) ** k * d for k, d in enumerate(deltas))
    )


def test_gae_per_token_rewards_and_padding_match_reference():
    gamma, lam = 0.9, 0.8
    rewards = [[0.1, -0.3, 0.2, 1.5], [-0.05, 0.7], [0.4, 0.0, -1.0]]
    values = [[0.5, 0.2, -0.1, 0.3], [0.0, 0.6], [-0.2, 0.1, 0.9]]
    mask = padded([[1.0] * len(r) for r in rewards], 4)
    mask[mask == 123.0] = 0.0
    adv, ret = gae(padded(rewards, 4), padded(values, 4), mask, gamma, lam)
    for i, (r, v) in enumerate(zip(rewards, values, strict=True)):
        ref_adv, ref_ret = reference_gae(r, v, gamma, lam)
        n = len(r)
        assert adv[i, :n].tolist() == pytest.approx(ref_adv, abs=1e-6)
        assert ret[i, :n].tolist() == pytest.approx(ref_ret, abs=1e-6)
        assert adv[i, n:].abs().sum().item() == 0.0  # nothing leaks past the end


def test_whitening_uses_only_real_tokens():
    x = torch.tensor([[1.0, 2.0, 3.0, 99.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    out = masked_whiten(x, mask)
    std = math.sqrt(((1 - 2) ** 2 + 0 + (3 - 2) ** 2) / 3)
    assert out[0, :3].tolist() == pytest.approx([-1 / std, 0.0, 1 / std], abs=1e-5)
    assert out[0, 3].item() == 0.0


BATCH = {
    "logp": [[-1.0, -0.5, -2.0], [-0.3, -1.2, -0.7]],
    "old_logp": [[-1.2, -0.4, -1.5], [-0.3, -0.9, -2.0]],
    "advantages": [[0.5, -1.0, 2.0], [-0.7, 1.3, 0.4]],
    "mask": [[1, 1, 1], [1, 1, 0]],
    "values": [[0.2, 0.9, -0.4], [1.5, -0.3, 0.0]],
    "old_values": [[0.1, 0.5, -0.35], [1.0, -0.25, 0.7]],
    "returns": [[0.0, 1.2, -1.0], [0.4, 0.1, 2.0]],
}


def test_clipped_policy_loss_matches_independent_computation():
    c = 0.2
    terms, clipped_count, sq, n = 0.0, 0, 0.0, 0
    for row in range(2):
        for t in range(3):
            if not BATCH["mask"][row][t]:
                continue
            diff = BATCH["logp"][row][t] - BATCH["old_logp"][row][t]
            ratio, adv = math.exp(diff), BATCH["advantages"][row][t]
            clipped_ratio = min(max(ratio, 1 - c), 1 + c)
            terms += max(-adv * ratio, -adv * clipped_ratio)
            clipped_count += -adv * clipped_ratio > -adv * ratio
            sq += diff**2
            n += 1
    t = {k: torch.tensor(v, dtype=torch.float32) for k, v in BATCH.items()}
    loss, clipfrac, approxkl = policy_loss(t["logp"], t["old_logp"], t["advantages"], t["mask"], c)
    assert loss.item() == pytest.approx(terms / n, abs=1e-6)
    assert clipfrac.item() == pytest.approx(clipped_count / n)
    assert approxkl.item() == pytest.approx(0.5 * sq / n, abs=1e-6)
    assert 0 < clipped_count < n  # the batch exercises both branches


def test_clipped_value_loss_matches_independent_computation():
    c = 0.2
    terms, clipped_count, n = 0.0, 0, 0
    for row in range(2):
        for t in range(3):
            if not BATCH["mask"][row][t]:
                continue
            v, old, ret = (BATCH[k][row][t] for k in ("values", "old_values", "returns"))
            v_clipped = min(max(v, old - c), old + c)
            terms += max((v - ret) ** 2, (v_clipped - ret) ** 2)
            clipped_count += (v_clipped - ret) ** 2 > (v - ret) ** 2
            n += 1
    t = {k: torch.tensor(v, dtype=torch.float32) for k, v in BATCH.items()}
    loss, clipfrac = value_loss(t["values"], t["old_values"], t["returns"], t["mask"], c)
    assert loss.item() == pytest.approx(0.5 * terms / n, abs=1e-6)
    assert clipfrac.item() == pytest.approx(clipped_count / n)
    assert 0 < clipped_count < n
