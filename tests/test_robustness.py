"""Attacks on real Pong frames through the surrogate gradient, and the protocol under attack."""

from __future__ import annotations

import pytest
import torch

from dsqn_rllib.envs.atari import AtariConfig, random_play_observations
from dsqn_rllib.evaluation.protocol import EvalConfig, evaluate
from dsqn_rllib.evaluation.robustness import (
    Attack,
    AttackConfig,
    evaluate_under_attack,
    perturb,
)
from dsqn_rllib.snn.networks import DQN, DSQN
from dsqn_rllib.snn.spike_init import threshold_aware_init_


@pytest.fixture(scope="module")
def pong_frames() -> torch.Tensor:
    return torch.as_tensor(random_play_observations(AtariConfig("pong"), 257, seed=3))


@pytest.fixture(scope="module")
def firing_dsqn(pong_frames: torch.Tensor) -> DSQN:
    """A DSQN whose every layer fires on Pong (so Q depends on the frame), T = 4."""
    torch.manual_seed(0)
    net = DSQN((4, 84, 84), 6, T=4)
    threshold_aware_init_(net, pong_frames[:128], target_rate=0.05)
    return net.eval()


def _td_loss(net: torch.nn.Module, obs: torch.Tensor, next_q: torch.Tensor) -> float:
    """MSE between Q(obs, a*) and fixed targets γ max Q(s'), a* the clean greedy action."""
    with torch.no_grad():
        return float(((net(obs).max(dim=1).values - next_q) ** 2).mean())


def test_fgsm_at_eps_0_is_the_clean_frame_and_at_eps_gt_0_flips_actions(
    pong_frames: torch.Tensor, firing_dsqn: DSQN
) -> None:
    obs = pong_frames[:256]
    clean = perturb(obs, AttackConfig(eps=0.0), firing_dsqn)
    with torch.no_grad():
        torch.testing.assert_close(firing_dsqn(clean), firing_dsqn(obs), rtol=0, atol=0)
        greedy = firing_dsqn(obs).argmax(dim=1)
        next_q = 0.99 * firing_dsqn(pong_frames[1:257]).max(dim=1).values
    adv = perturb(obs, AttackConfig(Attack.FGSM, eps=0.01), firing_dsqn)
    assert (adv - clean).abs().max() <= 0.01 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        flipped = (firing_dsqn(adv).argmax(dim=1) != greedy).float().mean()
    assert flipped > 0.05, f"FGSM changed the greedy action on only {flipped:.1%} of frames"
    assert _td_loss(firing_dsqn, adv, next_q) > _td_loss(firing_dsqn, obs, next_q)


def test_pgd_stays_in_its_ball_and_hurts_at_least_as_much_as_fgsm(
    pong_frames: torch.Tensor, firing_dsqn: DSQN
) -> None:
    obs = pong_frames[:64]
    x = obs.float() / 255
    pgd = perturb(obs, AttackConfig(Attack.PGD, eps=0.005, steps=5), firing_dsqn)
    assert (pgd - x).abs().max() <= 0.005 + 1e-6 and pgd.min() >= 0 and pgd.max() <= 1
    fgsm = perturb(obs, AttackConfig(Attack.FGSM, eps=0.005), firing_dsqn)
    with torch.no_grad():
        greedy = firing_dsqn(obs).argmax(dim=1)
        pgd_flips = (firing_dsqn(pgd).argmax(dim=1) != greedy).sum()
        fgsm_flips = (firing_dsqn(fgsm).argmax(dim=1) != greedy).sum()
    assert pgd_flips >= fgsm_flips > 0


def test_transfer_from_the_dqn_twin_perturbs_the_frame_it_evaluates(
    pong_frames: torch.Tensor, firing_dsqn: DSQN
) -> None:
    torch.manual_seed(1)
    twin = DQN((4, 84, 84), 6).eval()
    obs = pong_frames[:32]
    transfer = perturb(obs, AttackConfig(eps=0.01), twin)
    white_box = perturb(obs, AttackConfig(eps=0.01), firing_dsqn)
    assert not torch.equal(transfer, white_box)  # computed on the twin's gradient
    assert (transfer - obs.float() / 255).abs().max() <= 0.01 + 1e-6


def test_the_protocol_under_attack_at_eps_0_equals_the_clean_evaluation(
    firing_dsqn: DSQN,
) -> None:
    config = EvalConfig(episodes=2, epsilon=0.05, seed=7, max_episode_frames=2_000)
    clean = evaluate(firing_dsqn, "pong", config)
    attacked = evaluate_under_attack(firing_dsqn, "pong", config, AttackConfig(eps=0.0))
    assert attacked.returns == clean.returns and attacked.lengths == clean.lengths


def test_bad_attack_settings_are_one_line() -> None:
    with pytest.raises(ValueError, match="eps must be a number in"):
        AttackConfig(eps=2.0)
    with pytest.raises(ValueError, match="steps must be an integer"):
        AttackConfig(Attack.PGD, eps=0.1, steps=0)
    with pytest.raises(ValueError):
        AttackConfig("cw", eps=0.1)  # type: ignore[arg-type]
