"""Adversarial robustness: the paper's evaluation protocol with every observation perturbed.

The attacks are the usual ones on deep Q-networks (Huang et al. 2017): the perturbation
pushes the network away from its own greedy action, maximising the cross-entropy between
softmax(Q(x')) and argmax Q(x), within an L∞ ball of radius ``eps`` in pixel units (a frame
scaled to [0, 1]; 1/255 is one grey level) and the valid pixel range.

* FGSM (Goodfellow et al. 2015): one step, ``x' = clip(x + eps * sign(∇x L))``.
* PGD (Madry et al. 2018): ``steps`` signed steps of ``step_size`` from ``x``, each projected
  back onto the ball.

White-box for a DSQN means the gradient flows through the spikes by the surrogate gradient
(the network's own ATan by default): the attacker sees what training sees. A *transfer*
attack computes the perturbation on another network (``source``, e.g. the DQN twin) and
applies it to the evaluated one. ``eps = 0`` is the clean evaluation exactly (same seeds, same
ε-greedy draws, the same float frames the network computes from uint8).
"""

from __future__ import annotations

import contextlib
import numbers
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dsqn_rllib.errors import is_int
from dsqn_rllib.evaluation.protocol import (
    EvalConfig,
    EvalResult,
    _eval_mode,
    _torch_threads,
    epsilon_greedy,
    make_eval_vector_env,
    run_episodes,
)


class Attack(str, Enum):
    FGSM = "fgsm"
    PGD = "pgd"


@dataclass(frozen=True)
class AttackConfig:
    """One attack; ``eps`` in pixel units of frames scaled to [0, 1]."""

    attack: Attack = Attack.FGSM
    eps: float = 0.0
    """L∞ radius (0.01 is ~2.5 grey levels of 255)."""
    steps: int = 10
    """PGD iterations (FGSM: one)."""
    step_size: float | None = None
    """PGD step (default 2.5 * eps / steps, Madry et al.)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "attack", Attack(self.attack))
        if not isinstance(self.eps, numbers.Real) or not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps must be a number in [0, 1], got {self.eps!r}")
        if not is_int(self.steps) or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")


def as_unit_frames(obs: torch.Tensor) -> torch.Tensor:
    """uint8 frames → float in [0, 1] exactly as the networks scale them; floats as given."""
    return obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()


def perturb(
    obs: torch.Tensor, cfg: AttackConfig, source: nn.Module, *, clip_unit: bool | None = None
) -> torch.Tensor:
    """The adversarial observation (float) for ``obs``, computed on ``source``'s gradient.
    ``clip_unit``: keep pixels in [0, 1] (default: for uint8 frames)."""
    x = as_unit_frames(obs)
    if cfg.eps == 0:
        return x
    clip_unit = obs.dtype == torch.uint8 if clip_unit is None else clip_unit
    with _eval_mode(source), torch.enable_grad():
        with torch.no_grad():
            target = source(x).argmax(dim=1)
        if cfg.attack is Attack.FGSM:
            steps, step = 1, cfg.eps
        else:
            steps = cfg.steps
            step = cfg.step_size if cfg.step_size is not None else 2.5 * cfg.eps / steps
        adv = x.clone()
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = F.cross_entropy(source(adv), target)
            (grad,) = torch.autograd.grad(loss, adv)
            with torch.no_grad():
                adv = adv + step * grad.sign()
                adv = torch.max(torch.min(adv, x + cfg.eps), x - cfg.eps)  # the ball
                if clip_unit:
                    adv = adv.clamp(0.0, 1.0)
    return adv.detach()


def evaluate_under_attack(
    net: nn.Module,
    env: str,
    config: EvalConfig,
    attack: AttackConfig,
    *,
    source: nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> EvalResult:
    """``evaluate`` (the paper's protocol) with every observation perturbed by ``attack``,
    computed on ``source`` (default: ``net`` itself, white-box)."""
    rng = np.random.default_rng(config.seed)
    attacker = net if source is None else source
    with (
        _torch_threads(1),
        _eval_mode(net),
        contextlib.closing(
            make_eval_vector_env(env, config.resolved_num_envs, config.max_episode_frames)
        ) as vector,
    ):
        num_actions = int(vector.single_action_space.n)

        def policy(obs: np.ndarray) -> np.ndarray:
            adv = perturb(torch.as_tensor(obs, device=device), attack, attacker)
            with torch.inference_mode():
                greedy = net(adv).argmax(dim=1).cpu().numpy()
            return epsilon_greedy(greedy, config.epsilon, num_actions, rng)

        return run_episodes(vector, policy, config.quotas(), config.seed)
