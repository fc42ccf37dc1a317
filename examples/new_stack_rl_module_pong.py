"""New API stack: RLlib's own DQN trains our ``QNetworkRLModule`` on RLlib's own Atari Pong.

    python examples/new_stack_rl_module_pong.py                  # 2 iterations, ~20 s on 2 CPUs
    python examples/new_stack_rl_module_pong.py --iterations 5 --steps-per-iteration 1000 --T 8

Everything but the Q-network is stock RLlib: ``DQNConfig`` (new API stack, Ray 2.60's default)
builds ``DQN`` with its own ``SingleAgentEnvRunner``, episode replay buffer and
``DQNTorchLearner``. The env is ``ale_py:ALE/Pong-v5`` through RLlib's
``wrap_atari_for_new_api_stack`` (max over 4 skipped frames, no-op starts, episodic life, FIRE
on reset, 84x84 grayscale, a stack of 4), registered with ``tune.register_env``; its
observations are channel-last (84, 84, 4) float32 in [-1, 1], which the network takes as given.
The network is named by ``RLModuleSpec(module_class=QNetworkRLModule, model_config={"model":
"dsqn", "net_options": {...}})``. Stock ``DQNConfig`` asks for a dueling head by default, which
the DSQN does not have: ``.training(dueling=False)`` (the module refuses it otherwise). The
budget is tiny: this shows the wiring, it does not learn Pong (``dsqn train`` does).
RLlib's Atari wrappers grayscale and resize with OpenCV: ``pip install -e ".[dev]"`` brings
``opencv-python-headless``.

Prints the Q-network it built and, per iteration, RLlib's standard result keys::

    q_network: DSQN obs_shape=(84, 84, 4) channels_last=True
    iteration 1: num_env_steps_sampled_lifetime=... num_module_steps_trained_lifetime=... ...
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import gymnasium as gym
import ray
from ray import tune
from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.wrappers.atari_wrappers import wrap_atari_for_new_api_stack
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    EPISODE_RETURN_MEAN,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
)

from dsqn_rllib.rllib.rl_module import QNetworkRLModule

ENV = "ale_py:ALE/Pong-v5"
ENV_NAME = "rllib-atari-pong"


def make_env(env_config: dict) -> gym.Env:
    """RLlib's Atari stack; ALE's own frame skip and sticky actions off (the wrapper skips)."""
    env = gym.make(
        ENV, frameskip=1, repeat_action_probability=0.0, full_action_space=False, **env_config
    )
    return wrap_atari_for_new_api_stack(env, dim=84, framestack=4)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2, help="train() calls")
    parser.add_argument(
        "--steps-per-iteration", type=int, default=200, help="env steps each train() samples"
    )
    parser.add_argument(
        "--learning-starts", type=int, default=100, help="env steps before the first update"
    )
    parser.add_argument("--buffer-size", type=int, default=1_000, help="replay capacity")
    parser.add_argument("--batch-size", type=int, default=32, help="train batch size")
    parser.add_argument("--T", type=int, default=4, help="DSQN simulation steps")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> DQNConfig:
    return (
        DQNConfig()
        .environment(ENV_NAME)
        .env_runners(num_env_runners=0, rollout_fragment_length=4)  # sample in this process
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=QNetworkRLModule,
                model_config={"model": "dsqn", "net_options": {"T": args.T}},
            )
        )
        .training(
            dueling=False,  # stock DQNConfig defaults to a dueling head
            train_batch_size=args.batch_size,
            num_steps_sampled_before_learning_starts=args.learning_starts,
            target_network_update_freq=args.steps_per_iteration,
            replay_buffer_config={
                "type": "PrioritizedEpisodeReplayBuffer",
                "capacity": args.buffer_size,
            },
        )
        .reporting(
            min_sample_timesteps_per_iteration=args.steps_per_iteration,
            min_time_s_per_iteration=0,
        )
        .debugging(seed=args.seed, log_level="ERROR")
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False)
    try:
        tune.register_env(ENV_NAME, make_env)
        algo = build_config(args).build_algo()
        net = algo.get_module(DEFAULT_MODULE_ID).net
        print(
            f"q_network: {type(net).__name__} obs_shape={net.obs_shape} "
            f"channels_last={net.channels_last}",
            flush=True,
        )
        for i in range(1, args.iterations + 1):
            result = algo.train()
            learner = result.get(LEARNER_RESULTS, {}).get(DEFAULT_MODULE_ID, {})
            episode_return = result[ENV_RUNNER_RESULTS].get(EPISODE_RETURN_MEAN, float("nan"))
            print(
                f"iteration {i}: "
                f"{NUM_ENV_STEPS_SAMPLED_LIFETIME}={result[NUM_ENV_STEPS_SAMPLED_LIFETIME]} "
                f"{NUM_MODULE_STEPS_TRAINED_LIFETIME}="
                f"{learner.get(NUM_MODULE_STEPS_TRAINED_LIFETIME, 0)} "
                f"qf_loss={learner.get('qf_loss', float('nan')):.4f} "
                f"{EPISODE_RETURN_MEAN}={episode_return}",
                flush=True,
            )
        algo.stop()
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
