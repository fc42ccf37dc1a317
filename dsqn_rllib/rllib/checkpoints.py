"""RLlib Algorithm checkpoints: ``dsqn train``'s (``save_algorithm_checkpoint``), and
Q-networks out of them without Ray: a ``dsqn sweep`` trial's
(``<run-dir>/<sweep>/<trial>/checkpoint_00000N``) for ``dsqn robustness`` and the like.

``dsqn train``'s own checkpoints carry the project's files beside RLlib's and are read by
``dsqn_rllib.ops.checkpoints.load_network``; a Tune trial's hold RLlib's files only: the
network comes from the learner's RLModule state, the env from the algorithm's saved config.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.rl_module import RLModule

from dsqn_rllib.envs.atari import resolve_env
from dsqn_rllib.errors import ConfigError, first_line
from dsqn_rllib.ops.checkpoints import RLLIB_CTOR_FILE
from dsqn_rllib.snn.networks import QNetwork

CHECKPOINT_MARK = "rllib_checkpoint.json"


def latest_algorithm_checkpoint(path: str | Path) -> Path | None:
    """``path`` itself when it is an RLlib checkpoint, else its newest ``checkpoint_*`` (a Tune
    trial's folder); None when neither."""
    path = Path(path)
    if (path / CHECKPOINT_MARK).is_file():
        return path
    found = sorted(path.glob(f"checkpoint_*/{CHECKPOINT_MARK}"))  # zero-padded: in order
    return found[-1].parent if found else None


def network_from_algorithm_checkpoint(path: str | Path) -> tuple[QNetwork, str, str]:
    """(the learner's Q-network on the CPU in eval mode, its env as ``evaluate`` takes it (the
    game for Atari), its model kind) of an RLlib checkpoint of ``PipelinedDQN``."""
    checkpoint = latest_algorithm_checkpoint(path)
    if checkpoint is None:
        raise ConfigError(f"{path} holds no RLlib checkpoint ({CHECKPOINT_MARK})")
    try:
        with (checkpoint / "class_and_ctor_args.pkl").open("rb") as f:
            config = pickle.load(f)["ctor_args_and_kwargs"][0][0]
        module_dir = checkpoint / "learner_group" / "learner" / "rl_module" / DEFAULT_MODULE_ID
        module = RLModule.from_checkpoint(module_dir)
    except (OSError, pickle.UnpicklingError, KeyError, IndexError, ValueError) as err:
        raise ConfigError(
            f"cannot read the RLlib checkpoint {checkpoint}: {first_line(err)}"
        ) from None
    net = getattr(module, "net", None)
    if not isinstance(net, QNetwork):
        raise ConfigError(f"{checkpoint} is not a checkpoint of this project's Q-networks")
    env = config["env"] if isinstance(config, dict) else config.env
    game, _ = resolve_env(env)
    return net.cpu().eval(), str(game or env), str(module.model_config.get("model", "dsqn"))


def save_algorithm_checkpoint(algo: Any, path: Path) -> None:
    """``algo.save_to_path(path)`` (a new-stack ``PipelinedDQN``): an RLlib Algorithm checkpoint
    whose config leaves out what belongs to this driver process: ``env_steps_limit`` (the
    run's --total-steps: ``Algorithm.from_checkpoint`` gives an algorithm that trains on) and
    the metrics endpoint (its port is the driver's; the observer is rebuilt from the config)."""
    from dsqn_rllib.rllib.callbacks import RunObserver

    algo.save_to_path(str(path.resolve()))
    config = algo.config.copy(copy_frozen=False)
    config.env_steps_limit = None
    config.metrics_port = None
    config.callbacks(RunObserver)
    ctor_file = path / RLLIB_CTOR_FILE
    ctor = pickle.loads(ctor_file.read_bytes())  # {"class": ..., "ctor_args_and_kwargs": ...}
    ctor["ctor_args_and_kwargs"] = ((config.get_state(),), {})
    ctor_file.write_bytes(pickle.dumps(ctor))
