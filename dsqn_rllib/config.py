"""``dsqn train``'s configuration: the flat view of a ``DSQNConfig`` that the CLI, presets,
config files and a run's ``train_config.json`` use, plus the driver's own options.

Every option a ``DSQNConfig`` holds (network, learning, pipeline, evaluation) has the same
default here (the DSQN authors' code, Chen et al. 2022, which follows Mnih et al. 2015; a test
keeps the two equal) and is checked by ``DSQNConfig.validate_dsqn`` through
``to_dsqn_config``, which maps these fields onto it; ``validate``
checks only the driver's options itself (total steps, checkpoints, run id, registry, the ends
of the ε schedule). It runs before ``ray.init``: a bad value is one line naming the flag's
field, the value and what is allowed, and no actor ever starts.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from dsqn_rllib.errors import ConfigError, check_int, check_number, plain
from dsqn_rllib.snn.networks import ModelKind, SpikingConfig, spiking_config
from dsqn_rllib.snn.precision import Precision, parse_precision
from dsqn_rllib.snn.spike_init import DEFAULT_TARGET_RATE, SpikeInit

if TYPE_CHECKING:  # imported where used: the CLI's config loads RLlib only when it checks
    from dsqn_rllib.rllib.config import DSQNConfig


class ApiStack(str, Enum):
    """Which RLlib stack trains the network."""

    NEW = "new"
    """RLModule + Learner + our throughput pipeline (the supported path)."""
    OLD = "old"
    """TorchModelV2 registered with ModelCatalog under RLlib's old-API-stack DQN."""


@dataclass
class TrainConfig:
    """Everything ``dsqn train`` needs (see the module doc). Field docstrings double as the
    CLI's help."""

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
        """Raise ``ConfigError`` (one line) on the first bad value; return self when fine.

        The options a ``DSQNConfig`` holds are checked by it (``DSQNConfig.validate_dsqn``,
        the one place those rules live), through ``to_dsqn_config``, and its words are turned
        into this config's (``CLI_NAMES``); this method checks the driver's own options."""
        for f in dataclasses.fields(self):  # numpy counts (from gymnasium spaces) as Python's
            setattr(self, f.name, plain(getattr(self, f.name)))
        self._resolve_env()
        try:
            self.api_stack = ApiStack(self.api_stack)
        except ValueError:
            raise ConfigError(f"api_stack must be new or old, got {self.api_stack!r}") from None
        for name in ("epsilon_start", "epsilon_end"):  # the two ends of DSQNConfig's schedule
            check_number(name, getattr(self, name), low=0.0, high=1.0)
        if self.epsilon_start < self.epsilon_end:
            raise ConfigError(
                f"epsilon_start ({self.epsilon_start}) must be >= epsilon_end "
                f"({self.epsilon_end}): ε decays from start to end (equal values: constant ε)"
            )
        check_int("epsilon_decay_steps", self.epsilon_decay_steps, 0)
        check_int("total_steps", self.total_steps, 1)
        for name in ("checkpoint_interval",):
            check_int(name, getattr(self, name), 0)
        check_number("metrics_final_scrape_timeout_s", self.metrics_final_scrape_timeout_s, 0.0)
        check_number("checkpoint_every_minutes", self.checkpoint_every_minutes, 0.0)
        if self.run_id is not None and (
            not self.run_id or os.sep in self.run_id or self.run_id.startswith(".")
        ):
            raise ConfigError(
                f"run_id must be a plain name without {os.sep!r}, got {self.run_id!r}"
            )
        from dsqn_rllib.ops.registry import RegistryConfig

        RegistryConfig(url=self.registry_url, prefix=self.registry_prefix).validate()
        # Everything DSQNConfig holds: the network, learning, pipeline and evaluation options.
        try:
            self.to_dsqn_config()
        except ConfigError as err:
            raise ConfigError(cli_words(str(err))) from None
        self.model = ModelKind(self.model)
        self.spike_init = SpikeInit(self.spike_init)
        self.precision = parse_precision(self.precision)
        if self.spike_init is SpikeInit.THRESHOLD_AWARE and self.api_stack is not ApiStack.NEW:
            raise ConfigError("spike_init threshold-aware needs --api-stack new")
        return self

    def _resolve_env(self) -> None:
        """``game`` as its ROM id, or ``env`` as a Gymnasium id with vector observations; an
        Atari id given as --env (ALE/Pong-v5) is the game with the paper's preprocessing."""
        from dsqn_rllib.envs.atari import resolve_env, resolve_game

        if self.env is not None:
            self.game, self.env = resolve_env(self.env)
        elif self.game is None:
            raise ConfigError("give a --game (Atari) or an --env (Gymnasium id)")
        else:
            try:
                self.game = resolve_game(self.game)
            except ValueError as err:
                raise ConfigError(str(err)) from None

    def to_dsqn_config(self, *, iteration_seconds: float = 2.0) -> DSQNConfig:
        """These options as the ``DSQNConfig`` that holds them for RLlib (and Tune), checked
        by its ``validate_dsqn`` (``ConfigError`` in DSQNConfig's words; ``validate`` gives
        the CLI's): the one map from this view's fields to DSQNConfig's."""
        from dsqn_rllib.rllib.config import DSQNConfig, network_options

        cfg = self
        network = network_options(
            cfg.model,
            cfg.spiking,
            tuple(cfg.hidden_sizes),
            cfg.spike_init,
            cfg.spike_init_rate,
            cfg.precision,
        )
        config = (
            DSQNConfig()
            .environment(cfg.game or cfg.env)
            .env_runners(
                num_env_runners=cfg.num_env_runners,
                # 0 runners: the learner's process samples (PipelinedDQN takes turns).
                create_local_env_runner=cfg.num_env_runners == 0,
            )
            .rl_module(model_config=network)
            .training(
                lr=cfg.lr,
                adam_epsilon=cfg.adam_eps,
                gamma=cfg.gamma,
                train_batch_size=cfg.train_batch_size,
                target_network_update_freq=cfg.target_update_period,
                double_q=cfg.double_q,
                n_step=cfg.n_step,
                td_error_loss_fn=cfg.loss,
                num_steps_sampled_before_learning_starts=cfg.learning_starts,
                grad_clip=cfg.grad_clip,
                epsilon=[
                    (0, cfg.epsilon_start),
                    (max(1, cfg.epsilon_decay_steps), cfg.epsilon_end),
                ],
            )
            .pipeline(
                train_every=cfg.train_every,
                buffer_size=cfg.buffer_size,
                sticky_actions=cfg.sticky_actions,
                max_episode_frames=cfg.max_episode_frames,
                silent_layer_patience=cfg.silent_layer_patience,
                learner_device=cfg.learner_device,
                env_steps_limit=cfg.total_steps,
            )
            .evaluation(
                # The paper's protocol every eval_interval env steps, beside training (0: none).
                evaluation_interval_env_steps=cfg.eval_interval,
                evaluation_duration=cfg.eval_episodes,
                evaluation_config={"explore_epsilon": cfg.eval_epsilon},
                evaluation_parallel_to_training=True,
            )
            .reporting(min_time_s_per_iteration=iteration_seconds)
            .debugging(seed=cfg.seed)
            .observability(
                run_id=cfg.run_id, metrics_port=cfg.metrics_port, metrics_host=cfg.metrics_host
            )
        )
        # (Set, not passed to env_runners(), which raises its own ValueError at 0: the check and
        # its line are validate_dsqn's.)
        config.num_envs_per_env_runner = cfg.envs_per_runner
        if cfg.epsilon_decay_steps == 0:
            config.epsilon = [(0, cfg.epsilon_end), (1, cfg.epsilon_end)]
        config.validate_dsqn()
        return config

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


# DSQNConfig's names of the options TrainConfig names otherwise (its errors, in the CLI's words).
CLI_NAMES = {
    "num_steps_sampled_before_learning_starts": "learning_starts",
    "target_network_update_freq": "target_update_period",
    "replay_buffer_config['capacity']": "buffer_size",
    "num_envs_per_env_runner": "envs_per_runner",
    "evaluation_config['explore_epsilon']": "eval_epsilon",
    "evaluation_interval_env_steps": "eval_interval",
    "evaluation_duration": "eval_episodes",
    "td_error_loss_fn": "loss",
    "env_steps_limit": "total_steps",
    "adam_epsilon": "adam_eps",
}


def cli_words(message: str) -> str:
    """A ``DSQNConfig`` error with its option named as ``TrainConfig`` (and the CLI) names it."""
    for dsqn_name, name in CLI_NAMES.items():
        if message.startswith(dsqn_name + " "):
            return name + message[len(dsqn_name) :]
    return message
