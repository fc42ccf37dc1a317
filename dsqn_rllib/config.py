"""The training job's configuration: one dataclass, the paper's defaults, validated up front.

Defaults are those of the DSQN authors' code (Chen et al. 2022), which follow the Nature DQN
protocol (Mnih et al. 2015). ``validate`` runs before ``ray.init``: a bad value is one line
naming the field, the value and what is allowed, and no actor ever starts.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from dsqn_rllib.errors import ConfigError, check_int, check_number, is_int, plain
from dsqn_rllib.snn.networks import ModelKind, SpikingConfig, spiking_config
from dsqn_rllib.snn.precision import Precision, parse_precision
from dsqn_rllib.snn.spike_init import DEFAULT_TARGET_RATE, SpikeInit


class ApiStack(str, Enum):
    """Which RLlib stack trains the network."""

    NEW = "new"
    """RLModule + Learner + our throughput pipeline (the supported path)."""
    OLD = "old"
    """TorchModelV2 registered with ModelCatalog under RLlib's old-API-stack DQN."""


@dataclass
class TrainConfig:
    """Everything ``dsqn train`` needs. Field docstrings double as the CLI's help."""

    # Environment
    game: str | None = "pong"
    """Atari game: a paper short name (pong, space_invaders, ...) or any ALE ROM id."""
    env: str | None = None
    """A Gymnasium env id with vector observations (e.g. CartPole-v1); replaces the game."""
    sticky_actions: bool = False
    """Repeat the previous action with probability 0.25 (Machado et al. 2018)."""
    max_episode_frames: int = 108_000
    """Episode cap in emulator frames (30 minutes of play)."""

    # Model
    model: ModelKind = ModelKind.DSQN
    """dsqn (spiking) or dqn (its ReLU twin): both run through the identical pipeline."""
    spiking: SpikingConfig = field(default_factory=SpikingConfig)
    """T, readout, τ, V_th, V_reset, surrogate, biases (ignored for dqn)."""
    spike_init: SpikeInit = SpikeInit.DEFAULT
    """default (PyTorch's init, as the paper) or threshold-aware (beyond the paper: each spiking
    layer scaled to fire at spike_init_rate on random-play frames; Atari, new API stack)."""
    spike_init_rate: float = DEFAULT_TARGET_RATE
    """Firing rate each LIF layer is calibrated to by the threshold-aware init."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layers of the MLP used for vector observations."""
    api_stack: ApiStack = ApiStack.NEW
    """new: RLModule + our pipeline; old: TorchModelV2 under RLlib's old-stack DQN."""
    precision: Precision = Precision.FP32
    """fp32 (the paper's) or bf16: acting and evaluation stay fp32 bit for bit, the learner
    update runs the hidden layers in bf16 on fp32 master weights (beyond the paper; README);
    auto: bf16 where measured faster (AMX-bf16 CPUs, CUDA sm80+)."""

    # Learning (the authors' DQN)
    lr: float = 2.5e-4
    """Adam learning rate."""
    adam_eps: float = 1e-8
    """Adam ε: PyTorch's default, as the authors' ``optim.Adam(net.parameters(), lr)``. Keep it
    small: a fresh DSQN does not fire on Atari frames and wakes up only through tiny surrogate
    gradients, which Dopamine's ε = 1.5e-4 damps until the net stays silent (README)."""
    grad_clip: float | None = None
    """Clip the gradients' global L2 norm at this value (None: no clipping, as in the paper;
    RLlib's DQN would clip at 40)."""
    gamma: float = 0.99
    """Discount factor."""
    train_batch_size: int = 128
    """Transitions per gradient step."""
    train_every: int = 4
    """Env steps per gradient step (the replay ratio: one update of batch 128 per 4 steps)."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions (frames stored once as uint8: ~7.1 GB at 1M)."""
    learning_starts: int = 50_000
    """Env steps collected before the first update."""
    target_update_period: int = 10_000
    """Env steps between target-network syncs."""
    epsilon_start: float = 1.0
    """Exploration rate ε of the env runners at the first env step."""
    epsilon_end: float = 0.1
    """ε once the decay is over (<= epsilon_start)."""
    epsilon_decay_steps: int = 1_000_000
    """ε decays linearly from epsilon_start to epsilon_end over this many env steps."""
    double_q: bool = False
    """Double-DQN targets (off in the paper)."""
    n_step: int = 1
    """Env steps each TD target spans (1 in the paper; Rainbow uses 3): r_t + ... +
    gamma^(n-1) r_{t+n-1} + gamma^n max Q(s_{t+n}), cut at episode ends."""
    loss: Literal["mse", "huber"] = "mse"
    """TD loss: mse (the authors' code) or huber."""
    total_steps: int = 20_000_000
    """Agent steps (env steps, 4 frames each on Atari) to train for."""

    # Pipeline: sampling and learning resources
    num_env_runners: int = 2
    """Ray actors stepping environments in parallel (0: the learner's process steps them
    between updates, the fastest layout on a 2-core machine)."""
    envs_per_runner: int = 4
    """Environments each runner steps in lockstep with batched inference."""
    learner_device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto (cuda when present), cpu or cuda."""
    seed: int = 0
    """Seed of the envs, the network's initialisation and exploration (the pipeline is
    asynchronous: a seed fixes them, not the exact learning curve)."""

    # Evaluation and checkpoints
    eval_interval: int = 250_000
    """Env steps between evaluations (0: none during training)."""
    eval_episodes: int = 30
    """Episodes per evaluation (the paper: 30, no-op starts, no life loss)."""
    eval_epsilon: float = 0.05
    """ε of the evaluation policy (the paper: 0.05)."""
    checkpoint_interval: int = 250_000
    """Env steps between checkpoints (the latest is kept, plus the best evaluated)."""
    checkpoint_every_minutes: float = 30.0
    """Also write the latest checkpoint after this many minutes of wall time since the last
    one, so a crash loses minutes, not hours (0: by env steps only)."""

    # Ops: health, metrics, run directory and run registry
    silent_layer_patience: int = 5_000
    """Learner updates a DSQN's LIF layer may fire no spike at all (or spike at every step)
    after learning starts before the run warns, on the console, in Prometheus
    (dsqn_silent_layers) and in the run registry, that the network is not learning (0: never)."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (0: any free port; None: off)."""
    metrics_host: str = "127.0.0.1"
    """Address the metrics endpoint binds (0.0.0.0 to let a cluster's Prometheus scrape it)."""
    metrics_final_scrape_timeout_s: float = 120.0
    """At the end of a run that something scrapes, keep the endpoint up until a scrape has read
    the final values (the last evaluation): at most this long, or twice the longest recent gap
    between scrapes (0: close at once)."""
    stop_eval_return: float | None = None
    """Stop early once an evaluation's mean return reaches this value (None: never)."""
    run_dir: str = "runs"
    """Where runs write checkpoints and logs (one subfolder per run id)."""
    run_id: str | None = None
    """Name of this run (default: <model>-<game>-<time>)."""
    registry_url: str | None = None
    """Redis URL of the run registry, redis://host:6379/0 (default: $DSQN_REDIS_URL, else a
    local SQLite file in run_dir); the password comes from $DSQN_REDIS_PASSWORD, never here."""
    registry_prefix: str = "dsqn"
    """Prefix of the run registry's Redis keys (keeps experiments and tests apart)."""

    # ------------------------------------------------------------------------------------------

    @property
    def is_atari(self) -> bool:
        return self.env is None

    def validate(self) -> TrainConfig:
        """Raise ``ConfigError`` (one line) on the first bad value; return self when fine."""
        for f in dataclasses.fields(self):  # numpy counts (from gymnasium spaces) as Python's
            setattr(self, f.name, plain(getattr(self, f.name)))
        if self.env is not None:
            # An Atari id given as --env (ALE/Pong-v5) is the game with the paper's
            # preprocessing, as DSQNConfig.environment() reads it, never an MLP on raw pixels.
            self.game = _atari_env_id(self.env)
            if self.game is not None:
                self.env = None
            else:
                _check_gym_env(self.env)
        elif self.game is None:
            raise ConfigError("give a --game (Atari) or an --env (Gymnasium id)")
        if self.game is not None:
            from dsqn_rllib.envs.atari import resolve_game

            try:
                self.game = resolve_game(self.game)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        try:
            self.model = ModelKind(self.model)
        except ValueError:
            raise ConfigError(f"model must be dsqn or dqn, got {self.model!r}") from None
        try:
            self.api_stack = ApiStack(self.api_stack)
        except ValueError:
            raise ConfigError(f"api_stack must be new or old, got {self.api_stack!r}") from None
        try:
            self.spike_init = SpikeInit(self.spike_init)
        except ValueError:
            allowed = ", ".join(s.value for s in SpikeInit)
            raise ConfigError(
                f"spike_init must be one of {allowed}, got {self.spike_init!r}"
            ) from None
        if self.spike_init is SpikeInit.THRESHOLD_AWARE:
            if self.model is not ModelKind.DSQN or not self.is_atari:
                raise ConfigError("spike_init threshold-aware applies to a DSQN on an Atari game")
            if self.api_stack is not ApiStack.NEW:
                raise ConfigError("spike_init threshold-aware needs --api-stack new")
        try:
            self.precision = parse_precision(self.precision)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        check_number("spike_init_rate", self.spike_init_rate, 0.0, 1.0, low_open=True)
        if self.spike_init_rate >= 1.0:
            raise ConfigError(f"spike_init_rate must be < 1, got {self.spike_init_rate!r}")
        if self.loss not in ("mse", "huber"):
            raise ConfigError(f"loss must be mse or huber, got {self.loss!r}")
        if self.learner_device not in ("auto", "cpu", "cuda"):
            raise ConfigError(
                f"learner_device must be auto, cpu or cuda, got {self.learner_device!r}"
            )
        for name in ("lr", "adam_eps"):
            check_number(name, getattr(self, name), low=0.0, low_open=True)
        if self.grad_clip is not None:
            check_number("grad_clip", self.grad_clip, low=0.0, low_open=True)
        check_number("gamma", self.gamma, low=0.0, high=1.0)
        for name in ("epsilon_start", "epsilon_end", "eval_epsilon"):
            check_number(name, getattr(self, name), low=0.0, high=1.0)
        if self.epsilon_start < self.epsilon_end:
            raise ConfigError(
                f"epsilon_start ({self.epsilon_start}) must be >= epsilon_end "
                f"({self.epsilon_end}): ε decays from start to end (equal values: constant ε)"
            )
        for name in (
            "train_batch_size",
            "train_every",
            "target_update_period",
            "total_steps",
            "n_step",
        ):
            check_int(name, getattr(self, name), 1)
        check_int("num_env_runners", self.num_env_runners, 0)
        for name in ("envs_per_runner", "eval_episodes", "max_episode_frames"):
            check_int(name, getattr(self, name), 1)
        for name in (
            "learning_starts",
            "epsilon_decay_steps",
            "eval_interval",
            "checkpoint_interval",
            "silent_layer_patience",
        ):
            check_int(name, getattr(self, name), 0)
        check_int("seed", self.seed, 0)
        if self.metrics_port is not None:
            check_int("metrics_port", self.metrics_port, 0)
            if self.metrics_port > 65535:
                raise ConfigError(f"metrics_port must be <= 65535, got {self.metrics_port}")
        check_number("metrics_final_scrape_timeout_s", self.metrics_final_scrape_timeout_s, 0.0)
        check_number("checkpoint_every_minutes", self.checkpoint_every_minutes, 0.0)
        check_int("buffer_size", self.buffer_size, self.train_batch_size)
        if not self.hidden_sizes or not all(is_int(h) and h >= 1 for h in self.hidden_sizes):
            raise ConfigError(f"hidden_sizes must be positive integers, got {self.hidden_sizes!r}")
        if self.run_id is not None and (
            not self.run_id or os.sep in self.run_id or self.run_id.startswith(".")
        ):
            raise ConfigError(
                f"run_id must be a plain name without {os.sep!r}, got {self.run_id!r}"
            )
        from dsqn_rllib.ops.registry import RegistryConfig

        RegistryConfig(url=self.registry_url, prefix=self.registry_prefix).validate()
        return self

    def notes(self) -> list[str]:
        """Lines about valid but probably unintended settings, for the console at start."""
        notes = []
        if self.learning_starts >= self.total_steps:
            notes.append(
                f"--learning-starts {self.learning_starts:,} >= --total-steps "
                f"{self.total_steps:,}: the run only collects experience and never updates "
                "the network"
            )
        if self.eval_interval > self.total_steps:
            notes.append(
                f"--eval-interval {self.eval_interval:,} > --total-steps {self.total_steps:,}: "
                "only the final evaluation runs"
            )
        return notes

    def with_spiking(self, **options: Any) -> TrainConfig:
        """A copy whose spiking options are replaced (ValueError → ConfigError, one line)."""
        try:
            spiking = spiking_config(self.spiking, **options)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return dataclasses.replace(self, spiking=spiking)

    def epsilon_at(self, step: int) -> float:
        """The exploration rate after ``step`` env steps (linear decay, then constant)."""
        if self.epsilon_decay_steps == 0:
            return self.epsilon_end
        frac = min(1.0, step / self.epsilon_decay_steps)
        return self.epsilon_start + frac * (self.epsilon_end - self.epsilon_start)

    def model_options(self) -> dict[str, Any]:
        """Keyword options of ``build_q_network`` for this config's model."""
        options: dict[str, Any] = {"bias": self.spiking.bias, "precision": self.precision}
        if not self.is_atari:
            options["hidden_sizes"] = tuple(self.hidden_sizes)
        if self.model is ModelKind.DSQN:
            options.update(
                {f.name: getattr(self.spiking, f.name) for f in dataclasses.fields(SpikingConfig)}
            )
        return options

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (enums as their values) for run records and checkpoints."""
        out = dataclasses.asdict(self)
        out["spiking"] = {
            k: (v.value if isinstance(v, Enum) else v) for k, v in out["spiking"].items()
        }
        for key in ("model", "api_stack", "spike_init", "precision"):
            out[key] = (
                getattr(self, key).value if isinstance(getattr(self, key), Enum) else out[key]
            )
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["spiking"] = SpikingConfig(**data.get("spiking", {}))
        data["hidden_sizes"] = tuple(data.get("hidden_sizes", (256, 256)))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names}).validate()


def _atari_env_id(env_id: Any) -> str | None:
    """The text of an Atari env id (``ALE/Pong-v5``, ``ale_py:ALE/Pong-v5``,
    ``PongNoFrameskip-v4``) as a game name for ``resolve_game``; None for other ids."""
    if not isinstance(env_id, str):
        raise ConfigError(f"env must be a Gymnasium id such as CartPole-v1, got {env_id!r}")
    name = env_id.removeprefix("ale_py:")
    if name != env_id or name.startswith("ALE/") or name.endswith("NoFrameskip-v4"):
        return name
    import gymnasium as gym

    spec = gym.registry.get(name)
    entry = "" if spec is None else str(spec.entry_point)
    return name if entry.startswith("ale_py") else None


def _check_gym_env(env_id: str) -> None:
    import gymnasium as gym

    if env_id not in gym.registry:
        import difflib

        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ConfigError(f"unknown Gymnasium env {env_id!r}{hint}")
    space = gym.spec(env_id)
    del space  # observation shape is checked when the env is built
