"""Old API stack: RLlib's own DQN trains the DSQN ``TorchModelV2`` on RLlib's own Atari env.

    python examples/old_stack_dqn_atari.py                       # 2 iterations, ~20 s on 2 CPUs
    python examples/old_stack_dqn_atari.py --iterations 5 --steps-per-iteration 1000 --T 8

A stock ``DQNConfig`` names the model registered by ``import dsqn_rllib.rllib``:
``model={"custom_model": "dsqn", "custom_model_config": {"T": ...}}``. The env is
``ale_py:ALE/Pong-v5`` as v5 defines it (ALE skips 4 frames, sticky actions 0.25) through the
old stack's ``"deepmind"`` preprocessing (``wrap_deepmind``: no-op starts, episodic life, FIRE
on reset, 84x84 grayscale, a stack of 4), so the network sees RLlib's channel-last (84, 84, 4)
uint8 frames. The only departure from stock RLlib is ``OldStackDQN``: stock ``DQN`` raises
``TypeError: argument of type 'ABCMeta' is not iterable`` at setup in Ray 2.60, and
``OldStackDQN`` replaces the one method that does (``dsqn_rllib/rllib/old_stack.py``). The
budget is tiny: this shows the wiring, it does not learn Pong (``dsqn train`` does).
RLlib's Atari wrappers grayscale and resize with OpenCV: ``pip install -e ".[dev]"`` brings
``opencv-python-headless``.

Prints the Q-network it built and, per iteration, RLlib's env-step counters::

    q_network: DSQN obs_shape=(84, 84, 4) channels_last=True
    iteration 1: num_env_steps_sampled_lifetime=200 num_env_steps_trained=800 ...
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import ray
from ray.rllib.algorithms.dqn import DQNConfig

from dsqn_rllib.rllib import OldStackDQN, register_models

ENV = "ale_py:ALE/Pong-v5"


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
        DQNConfig(algo_class=OldStackDQN)
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .environment(ENV)
        .framework("torch")
        .env_runners(
            num_env_runners=0,  # sample in this process
            rollout_fragment_length=4,
            preprocessor_pref="deepmind",  # RLlib's default, written out: wrap_deepmind
        )
        .training(
            model={"custom_model": "dsqn", "custom_model_config": {"T": args.T}},
            # The DSQN's output layer is the Q-head: no extra layers, no dueling, no atoms
            # (stock DQNConfig defaults to hiddens=[256] and dueling=True).
            hiddens=[],
            dueling=False,
            num_atoms=1,
            train_batch_size=args.batch_size,
            num_steps_sampled_before_learning_starts=args.learning_starts,
            target_network_update_freq=args.steps_per_iteration,
            replay_buffer_config={"type": "MultiAgentReplayBuffer", "capacity": args.buffer_size},
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
        # Importing dsqn_rllib.rllib registered the models; a Ray started after an earlier
        # ray.shutdown() in this process has an empty registry, so register again (idempotent).
        register_models()
        algo = build_config(args).build_algo()
        net = algo.get_policy().model.net
        print(
            f"q_network: {type(net).__name__} obs_shape={net.obs_shape} "
            f"channels_last={net.channels_last}",
            flush=True,
        )
        for i in range(1, args.iterations + 1):
            result = algo.train()
            # The old stack's counters are lifetime totals; its learner reports per policy.
            learner = result["info"]["learner"]["default_policy"]
            print(
                f"iteration {i}: "
                f"num_env_steps_sampled_lifetime={result['num_env_steps_sampled_lifetime']} "
                f"num_env_steps_trained={result['num_env_steps_trained']} "
                f"num_grad_updates_lifetime={learner['num_grad_updates_lifetime']}",
                flush=True,
            )
        algo.stop()
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
