"""When do a fresh DSQN's layers start to fire? Ours beside the authors' SpikingJelly net.

A single-process DQN loop written after the authors' ``train.py`` (SpikingJelly
``activation_based/examples/DSQN``): one env, 4 agent steps then one update of batch 128
(their 32 x PLAY_STEPS), Adam lr 2.5e-4 with a configurable ε (theirs: PyTorch's 1e-8), MSE TD
loss, target sync every 10k agent steps, ε-greedy 1.0 -> 0.1 over 1M steps, on real Atari play
with rewards. ``--net spikingjelly`` trains the authors' architecture built from SpikingJelly's
own ``layer.Conv2d`` / ``LIFNode(ATan, detach_reset=True)`` / ``NonSpikingLIFNode``, frames /
256 as theirs; ``--net ours`` trains ``dsqn_rllib.DSQN`` (uint8 frames / 255). Both start from
the same weights (ours, seeded, copied into theirs).

Every ``--log-every`` updates it writes one JSON line: each LIF layer's firing rate on a fixed
probe of replay frames, Q's spread over those frames, the TD loss and training returns.

    python studies/wake_up.py --net ours --updates 1500 --out ours.jsonl
    python studies/wake_up.py --net spikingjelly --updates 1500 --out theirs.jsonl

Needs ``pip install spikingjelly`` for ``--net spikingjelly`` (not a dependency of the package).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from dsqn_rllib.envs.atari import AtariConfig, make_atari_env
from dsqn_rllib.snn.networks import DSQN
from dsqn_rllib.snn.spike_init import threshold_aware_init_

LIF_LAYERS = ("conv1", "conv2", "conv3", "fc")


class SpikingJellyDSQN(nn.Module):
    """The authors' DSQN (max-mem readout) from SpikingJelly's layers, multi-step mode."""

    def __init__(self, channels: int, num_actions: int, T: int) -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        def lif() -> nn.Module:
            return neuron.LIFNode(surrogate_function=surrogate.ATan(), detach_reset=True)

        self.T = T
        self.network = nn.Sequential(
            layer.Conv2d(channels, 32, kernel_size=8, stride=4),
            lif(),
            layer.Conv2d(32, 64, kernel_size=4, stride=2),
            lif(),
            layer.Conv2d(64, 64, kernel_size=3, stride=1),
            lif(),
            layer.Flatten(),
            layer.Linear(64 * 7 * 7, 512),
            lif(),
            layer.Linear(512, num_actions),
            neuron.NonSpikingLIFNode(decode="max-mem"),
        )
        functional.set_step_mode(self.network, step_mode="m")
        self._reset = functional.reset_net
        self.rates: dict[str, Tensor] = {}
        lif_modules = [m for m in self.network if isinstance(m, neuron.LIFNode)]
        for name, module in zip(LIF_LAYERS, lif_modules, strict=True):
            module.register_forward_hook(self._rate_hook(name))

    def _rate_hook(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: object, spikes: Tensor) -> None:
            self.rates[name] = spikes.detach().mean()

        return hook

    def load_from_ours(self, ours: DSQN) -> None:
        """Copy our layers' weights (same shapes, same order) into this network."""
        theirs = [m for m in self.network if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            for dst, src in zip(theirs, ours.layers.values(), strict=True):
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.float() / 256  # the authors' scaling
        q = self.network(x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1))
        self._reset(self.network)  # SpikingJelly keeps membranes in the modules
        return q


class Ours(nn.Module):
    """``dsqn_rllib.DSQN`` with the same rate bookkeeping as ``SpikingJellyDSQN``."""

    def __init__(self, net: DSQN) -> None:
        super().__init__()
        self.net = net
        self.rates: dict[str, Tensor] = {}

    def forward(self, obs: Tensor) -> Tensor:
        q, stats = self.net(obs, return_stats=True)
        self.rates = stats.rates
        return q


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=("ours", "spikingjelly"), default="ours")
    parser.add_argument("--game", default="pong")
    parser.add_argument("--updates", type=int, default=1500)
    parser.add_argument("--learning-starts", type=int, default=5000)
    parser.add_argument("--adam-eps", type=float, default=1e-8)
    parser.add_argument("--lr", type=float, default=2.5e-4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--T", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument(
        "--spike-init", choices=("default", "threshold-aware"), default="default",
        help="ours only: threshold-aware init on the probe frames before the first update",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    env = make_atari_env(AtariConfig(args.game), seed=args.seed)
    num_actions = int(env.action_space.n)
    ours = DSQN(env.observation_space.shape, num_actions, T=args.T)
    target_ours = DSQN(env.observation_space.shape, num_actions, T=args.T)
    if args.net == "ours":
        net: nn.Module = Ours(ours)
        target: nn.Module = Ours(target_ours)
    else:
        net = SpikingJellyDSQN(4, num_actions, args.T)
        net.load_from_ours(ours)
        target = SpikingJellyDSQN(4, num_actions, args.T)
    target.load_state_dict(net.state_dict())
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, eps=args.adam_eps)

    capacity = args.learning_starts + 4 * args.updates + 4
    obs_buf = np.zeros((capacity, *env.observation_space.shape), np.uint8)
    next_buf = np.zeros_like(obs_buf)
    act_buf = np.zeros(capacity, np.int64)
    rew_buf = np.zeros(capacity, np.float32)
    done_buf = np.zeros(capacity, np.float32)
    size = 0
    obs, _ = env.reset()
    episode_return, returns = 0.0, []

    def act_and_store(step: int) -> None:
        nonlocal obs, size, episode_return
        epsilon = max(0.1, 1.0 - 0.9 * step / 1_000_000)
        if rng.random() < epsilon:
            action = int(rng.integers(num_actions))
        else:
            with torch.no_grad():
                action = int(net(torch.as_tensor(obs[None])).argmax(1))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        obs_buf[size], next_buf[size], act_buf[size] = obs, next_obs, action
        rew_buf[size], done_buf[size] = float(reward), float(terminated)
        size += 1
        episode_return += float(reward)
        obs = next_obs
        if terminated or truncated:
            returns.append(episode_return)
            episode_return = 0.0
            obs, _ = env.reset()

    step = 0
    while size < args.learning_starts:
        act_and_store(step)
        step += 1
    probe = torch.as_tensor(obs_buf[:256].copy())
    out = args.out.open("w")
    if args.spike_init == "threshold-aware":
        if args.net != "ours":
            parser.error("--spike-init threshold-aware applies to --net ours")
        gains = threshold_aware_init_(ours, probe)
        target.load_state_dict(net.state_dict())
        out.write(json.dumps({"net": args.net, "spike_init": args.spike_init, "gains": gains}))
        out.write("\n")
    started = time.time()
    for update in range(1, args.updates + 1):
        for _ in range(4):
            act_and_store(step)
            step += 1
        idx = rng.integers(size, size=args.batch)
        batch_obs = torch.as_tensor(obs_buf[idx])
        q = net(batch_obs).gather(1, torch.as_tensor(act_buf[idx])[:, None]).squeeze(1)
        train_rates = {k: float(v) for k, v in net.rates.items()}
        with torch.no_grad():
            next_q = target(torch.as_tensor(next_buf[idx])).max(1).values
            y = torch.as_tensor(rew_buf[idx]) + 0.99 * next_q * (1 - torch.as_tensor(done_buf[idx]))
        loss = nn.functional.mse_loss(q, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10_000 < 4:
            target.load_state_dict(net.state_dict())
        if update % args.log_every == 0 or update == 1:
            with torch.no_grad():
                probe_q = net(probe)
            record = {
                "net": args.net,
                "update": update,
                "env_steps": step,
                "seconds": round(time.time() - started, 1),
                "td_loss": loss.item(),
                "probe_rates": {k: float(v) for k, v in net.rates.items()},
                "train_batch_rates": train_rates,
                "probe_q_std": float(probe_q.std(0).mean()),
                "returns_last_10": returns[-10:],
                "episodes": len(returns),
            }
            out.write(json.dumps(record) + "\n")
            out.flush()
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
