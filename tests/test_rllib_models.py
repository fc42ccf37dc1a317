"""The RLlib adapters under stock ``DQNConfig``s: registration, both observation layouts, and
the one-line refusal of DQN heads the networks do not have (no Ray cluster needed)."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.policy.sample_batch import SampleBatch

from dsqn_rllib.rllib import OldStackDQN, register_models
from dsqn_rllib.rllib.old_stack import DenseTwinModelV2, SpikingModelV2
from dsqn_rllib.rllib.rl_module import QNetworkRLModule
from dsqn_rllib.snn.networks import DSQN

CHW, HWC = (4, 84, 84), (84, 84, 4)
ACTIONS = gym.spaces.Discrete(6)


def frames_space(shape: tuple[int, ...]) -> gym.spaces.Box:
    return gym.spaces.Box(0, 255, shape, np.uint8)


def random_frames(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def as_chw(frames: torch.Tensor) -> torch.Tensor:
    return frames.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def wake(net: torch.nn.Module) -> None:
    """Scale the default weights up so that every LIF layer fires and Q depends on the frame
    (a fresh DSQN is silent: its Q would be the same whatever the layout)."""
    for p in net.parameters():
        p.mul_(6.0)


# ------------------------------------------------------------------------------------------------
# Registration
# ------------------------------------------------------------------------------------------------


def test_importing_the_rllib_package_registers_the_old_stack_models() -> None:
    """In a fresh interpreter: nothing registered before the import, both names after it."""
    script = (
        "from ray.tune.registry import RLLIB_MODEL, _global_registry as r\n"
        "names = ('dsqn', 'dqn-twin')\n"
        "before = [r.contains(RLLIB_MODEL, n) for n in names]\n"
        "import dsqn_rllib.rllib\n"
        "print(before, [r.contains(RLLIB_MODEL, n) for n in names])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[False, False] [True, True]"


def test_register_models_is_idempotent() -> None:
    from ray.tune.registry import RLLIB_MODEL, _global_registry

    register_models()
    register_models()
    assert _global_registry.get(RLLIB_MODEL, "dsqn") is SpikingModelV2
    assert _global_registry.get(RLLIB_MODEL, "dqn-twin") is DenseTwinModelV2


# ------------------------------------------------------------------------------------------------
# Old API stack: the TorchModelV2 under a stock DQNConfig's own policy
# ------------------------------------------------------------------------------------------------


def old_stack_config(**training: object) -> DQNConfig:
    register_models()
    return (
        DQNConfig(algo_class=OldStackDQN)
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .framework("torch")
        .training(
            model={"custom_model": "dsqn", "custom_model_config": {"T": 2}},
            train_batch_size=8,
            **training,
        )
    )


def old_stack_policy(config: DQNConfig, shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    from ray.rllib.algorithms.dqn.dqn_torch_policy import DQNTorchPolicy

    return DQNTorchPolicy(frames_space(shape), ACTIONS, config.to_dict())


def test_torch_model_v2_takes_rllibs_channel_last_frames_and_trains() -> None:
    torch.manual_seed(0)
    config = old_stack_config(hiddens=[], dueling=False, num_atoms=1)
    policy = old_stack_policy(config, HWC)
    net = policy.model.net
    assert isinstance(net, DSQN) and net.channels_last and net.obs_shape == HWC
    # Its Q-values are those of a channel-first DSQN with the same weights.
    wake(net)
    twin = DSQN(CHW, 6, T=2)
    twin.load_state_dict(net.state_dict())
    frames = random_frames(8, HWC)
    q, _ = policy.model({"obs": torch.from_numpy(frames)}, [], None)
    assert q.std(dim=0).min() > 0  # Q depends on the frame
    torch.testing.assert_close(q, twin(as_chw(torch.from_numpy(frames))))
    actions, _, _ = policy.compute_actions(frames, explore=False)
    assert actions.shape == (8,)
    # One step of old-stack DQN's own loss and optimizer moves the network's weights.
    before = [p.detach().clone() for p in net.parameters()]
    n = len(frames)
    batch = {
        SampleBatch.OBS: frames,
        SampleBatch.NEXT_OBS: random_frames(n, HWC, seed=1),
        SampleBatch.ACTIONS: np.arange(n) % 6,
        SampleBatch.REWARDS: np.linspace(-1, 1, n, dtype=np.float32),
        SampleBatch.TERMINATEDS: np.zeros(n, bool),
        SampleBatch.TRUNCATEDS: np.zeros(n, bool),
        "weights": np.ones(n, np.float32),
    }
    policy.learn_on_batch(SampleBatch(batch))
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


@pytest.mark.parametrize(
    ("training", "message"),
    [
        (
            {},  # stock DQNConfig: hiddens=[256], dueling=True
            "custom_model 'dsqn' does not support dueling=True (a value/advantage head), "
            "hiddens=[256] (layers after the network): set .training(dueling=False, hiddens=[]) "
            "on the DQNConfig (stock DQNConfig defaults to dueling=True and hiddens=[256])",
        ),
        (
            {"hiddens": []},
            "custom_model 'dsqn' does not support dueling=True (a value/advantage head): "
            "set .training(dueling=False) on the DQNConfig "
            "(stock DQNConfig defaults to dueling=True)",
        ),
        (
            {"hiddens": [], "dueling": False, "num_atoms": 51},
            "custom_model 'dsqn' does not support num_atoms=51 (distributional Q): "
            "set .training(num_atoms=1) on the DQNConfig",
        ),
        (
            {"hiddens": [], "dueling": False, "noisy": True},
            "custom_model 'dsqn' does not support noisy=True (a noisy head): "
            "set .training(noisy=False) on the DQNConfig",
        ),
    ],
)
def test_torch_model_v2_refuses_a_dqn_head_in_one_line(training: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        old_stack_policy(old_stack_config(**training), HWC)
    assert str(info.value) == message


# ------------------------------------------------------------------------------------------------
# New API stack: the RLModule as a stock DQNConfig builds it
# ------------------------------------------------------------------------------------------------


def new_stack_module(shape: tuple[int, ...], **training: object) -> QNetworkRLModule:
    config = (
        DQNConfig()
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=QNetworkRLModule,
                model_config={"model": "dsqn", "net_options": {"T": 2}},
            )
        )
        .training(**training)
    )
    spec = config.get_rl_module_spec(spaces={DEFAULT_MODULE_ID: (frames_space(shape), ACTIONS)})
    spec.inference_only = False
    return spec.build()


def test_rl_module_takes_rllibs_channel_last_frames_in_every_forward_pass() -> None:
    torch.manual_seed(0)
    hwc = new_stack_module(HWC, dueling=False)
    chw = new_stack_module(CHW, dueling=False)
    assert hwc.net.channels_last and hwc.net.obs_shape == HWC and not chw.net.channels_last
    assert hwc.uses_double_q  # stock DQNConfig's double_q=True reached the module
    wake(hwc.net)
    chw.net.load_state_dict(hwc.net.state_dict())
    for module in (hwc, chw):
        module.make_target_networks()
    frames = torch.from_numpy(random_frames(8, HWC))
    next_frames = torch.from_numpy(random_frames(8, HWC, seed=1))
    out_hwc = hwc.forward_train({Columns.OBS: frames, Columns.NEXT_OBS: next_frames})
    out_chw = chw.forward_train(
        {Columns.OBS: as_chw(frames), Columns.NEXT_OBS: as_chw(next_frames)}
    )
    assert out_hwc.keys() == out_chw.keys()
    assert out_hwc[QF_PREDS].std(dim=0).min() > 0  # Q depends on the frame
    for key in out_hwc:
        torch.testing.assert_close(out_hwc[key], out_chw[key])
    greedy = hwc.forward_inference({Columns.OBS: frames})[Columns.ACTIONS]
    assert torch.equal(
        greedy, chw.forward_inference({Columns.OBS: as_chw(frames)})[Columns.ACTIONS]
    )
    explored = hwc.forward_exploration({Columns.OBS: frames}, t=0)[Columns.ACTIONS]
    assert explored.shape == (8,)


@pytest.mark.parametrize(
    ("training", "message"),
    [
        (
            {},  # stock DQNConfig: dueling=True
            "QNetworkRLModule does not support dueling=True (a value/advantage head): "
            "set .training(dueling=False) on the DQNConfig "
            "(stock DQNConfig defaults to dueling=True)",
        ),
        (
            {"dueling": False, "num_atoms": 51},
            "QNetworkRLModule does not support num_atoms=51 (distributional Q): "
            "set .training(num_atoms=1) on the DQNConfig",
        ),
        (
            {"num_atoms": 51},
            "QNetworkRLModule does not support dueling=True (a value/advantage head), "
            "num_atoms=51 (distributional Q): set .training(dueling=False, num_atoms=1) on the "
            "DQNConfig (stock DQNConfig defaults to dueling=True)",
        ),
    ],
)
def test_rl_module_refuses_dueling_and_distributional_q_in_one_line(
    training: dict, message: str
) -> None:
    with pytest.raises(ValueError) as info:
        new_stack_module(HWC, **training)
    assert str(info.value) == message


def test_building_the_rl_module_logs_no_unavoidable_deprecation(caplog: object) -> None:
    """Ray 2.60 logs an RLModuleConfig deprecation for every RLModule built; ours drops that
    one message (a user cannot act on it) and nothing else."""
    import logging

    import gymnasium as gym
    import numpy as np

    from dsqn_rllib.rllib import DSQNConfig

    config = DSQNConfig().environment("CartPole-v1").rl_module(model_config={"T": 2})
    spaces = {"default_policy": (gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2))}
    with caplog.at_level(logging.WARNING):  # type: ignore[attr-defined]
        config.get_rl_module_spec(spaces=spaces, inference_only=True).build()
        logging.getLogger("ray._common.deprecation").warning("another deprecation")
    messages = [r.getMessage() for r in caplog.records]  # type: ignore[attr-defined]
    assert not any("RLModuleConfig" in m for m in messages), messages
    assert "another deprecation" in messages
