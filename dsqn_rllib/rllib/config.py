"""``DSQNConfig``: RLlib's ``DQNConfig`` with the paper's defaults, the one source of every
hyperparameter of a DSQN (or DQN-twin) run.

    config = (
        DSQNConfig()
        .environment("pong")                      # or "ale_py:ALE/Pong-v5", "CartPole-v1"
        .training(lr=2.5e-4, train_batch_size=128, gamma=0.99)
        .rl_module(model_config={"T": 8, "readout": "max-mem"})
        .pipeline(train_every=4, buffer_size=1_000_000)
        .env_runners(num_env_runners=2, num_envs_per_env_runner=4)
    )
    algo = config.build_algo()                    # a PipelinedDQN
    tune.Tuner(config.algo_class, param_space=config)   # the same, one trial per grid point

Where each option lives:

* ``environment(env)``: an Atari game (paper short name ``"pong"``, ROM id, ``"ALE/Pong-v5"``
  or ``"ale_py:ALE/Pong-v5"``) picks the conv DSQN on (4, 84, 84) frames; a Gymnasium id with
  vector observations (``"CartPole-v1"``) picks the spiking MLP.
* ``training(...)``: DQNConfig's own fields, read by the learner and the pipeline: ``lr``,
  ``adam_epsilon``, ``gamma``, ``train_batch_size``, ``n_step``, ``double_q``,
  ``td_error_loss_fn``, ``grad_clip``, ``target_network_update_freq``,
  ``num_steps_sampled_before_learning_starts``, ``epsilon`` (a schedule), and
  ``replay_buffer_config["capacity"]``.
* ``rl_module(model_config={...})``: the network (``NETWORK_DEFAULTS``: ``model``, ``T``,
  ``readout``, ``tau``, ``v_threshold``, ``v_reset``, ``surrogate``, ...).
* ``pipeline(...)``: what DQNConfig has no field for (the replay ratio, Atari protocol options,
  the silent-layer guard).
* ``evaluation(evaluation_interval=k)`` or ``evaluation(evaluation_interval_env_steps=n)``: the
  paper's protocol (``evaluation_duration`` episodes at ε =
  ``evaluation_config["explore_epsilon"]``, default 0.05) every k iterations or n env steps;
  with ``evaluation_parallel_to_training=True`` in a Ray task beside training
  (``dsqn_rllib.rllib.paper_evaluation``).

``validate()`` runs before any actor starts and raises ``ConfigError``: one line naming the
option, its value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import itertools
from enum import Enum
from typing import Any

from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from dsqn_rllib.envs.atari import resolve_env
from dsqn_rllib.errors import ConfigError, check_int, check_number, is_int, plain
from dsqn_rllib.snn.networks import ModelKind, SpikingConfig, spiking_config
from dsqn_rllib.snn.precision import Precision, parse_precision
from dsqn_rllib.snn.spike_init import DEFAULT_TARGET_RATE, SpikeInit


# The network's options in ``rl_module(model_config=...)``, with their defaults (the authors'
# code, see SpikingConfig). ``hidden_sizes`` applies to the MLPs of vector observations only.
def network_options(
    model: ModelKind = ModelKind.DSQN,
    spiking: SpikingConfig | None = None,
    hidden_sizes: tuple[int, ...] = (256, 256),
    spike_init: SpikeInit = SpikeInit.DEFAULT,
    spike_init_rate: float = DEFAULT_TARGET_RATE,
    precision: Precision = Precision.FP32,
) -> dict[str, Any]:
    """The network's options as ``rl_module(model_config=...)`` takes them (plain values;
    ``DSQNConfig.validate`` checks them, so a bad one is its one line, not an enum's error)."""
    spiking = spiking or SpikingConfig()
    return {
        "model": _plain_value(model),
        **{
            f.name: _plain_value(getattr(spiking, f.name))
            for f in dataclasses.fields(SpikingConfig)
        },
        "hidden_sizes": tuple(hidden_sizes) if isinstance(hidden_sizes, list) else hidden_sizes,
        "spike_init": _plain_value(spike_init),
        "spike_init_rate": spike_init_rate,
        "precision": _plain_value(precision),
    }


def _plain_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


NETWORK_DEFAULTS: dict[str, Any] = network_options()
_SPIKING_KEYS = tuple(f.name for f in dataclasses.fields(SpikingConfig))
# DQNConfig puts these into every RLModule's model_config (``_model_config_auto_includes``).
_DQN_AUTO_KEYS = ("double_q", "dueling", "epsilon", "num_atoms", "std_init", "v_max", "v_min")
# RLlib's own model_config defaults (DefaultModelConfig) that come along; not ours to check.
PAPER_EVAL_EPSILON = 0.05


class DSQNConfig(DQNConfig):
    """``DQNConfig`` for ``PipelinedDQN``, with the DSQN authors' defaults (Chen et al. 2022,
    their SpikingJelly ``train.py``; Mnih et al. 2015 where they follow it)."""

    def __init__(self, algo_class: type | None = None) -> None:
        from dsqn_rllib.rllib.algorithm import PipelinedDQN
        from dsqn_rllib.rllib.env_runner import VectorEnvRunner
        from dsqn_rllib.rllib.learner import FusedAdamDQNLearner
        from dsqn_rllib.rllib.rl_module import QNetworkRLModule

        super().__init__(algo_class=algo_class or PipelinedDQN)
        self.env = "pong"
        # DQN, as the authors' train.py (DQNConfig's own defaults differ in every line).
        self.lr = 2.5e-4
        self.adam_epsilon = 1e-8  # PyTorch's: a larger ε keeps a fresh DSQN silent (README)
        self.gamma = 0.99
        self.train_batch_size = 128  # 32 x PLAY_STEPS 4
        self.target_network_update_freq = 10_000  # env steps
        self.num_steps_sampled_before_learning_starts = 50_000
        self.epsilon = [(0, 1.0), (1_000_000, 0.1)]
        self.td_error_loss_fn = "mse"
        self.grad_clip = None  # the paper does not clip (DQNConfig: 40)
        self.double_q = False
        self.dueling = False
        self.num_atoms = 1
        self.n_step = 1
        self.hiddens = []
        self.replay_buffer_config = {"type": "FrameReplayBuffer", "capacity": 1_000_000}
        # Pipeline options (``pipeline()``)
        self.train_every = 4
        """Env steps per gradient step: the replay ratio (one batch of 128 per 4 steps)."""
        self.sticky_actions = False
        """Atari: repeat the previous action with probability 0.25 (Machado et al. 2018)."""
        self.max_episode_frames = 108_000
        """Atari: episode cap in emulator frames (30 minutes of play)."""
        self.silent_layer_patience = 5_000
        """Updates a LIF layer may stay at rate 0 (or 1) before the run warns (0: never)."""
        self.learner_device = "auto"
        """auto (cuda when present), cpu or cuda."""
        self.env_steps_limit: int | None = None
        """Sample no more than this many env steps in all (None: no limit). An iteration lasts
        ``min_time_s_per_iteration``: without a limit a run stops at the first iteration past
        its goal (``dsqn train`` sets its ``--total-steps`` here)."""
        # Observability (``observability()``, dsqn_rllib.rllib.callbacks.RunObserver)
        self.registry = False
        """Record the run in the run registry (Redis at registry_url or $DSQN_REDIS_URL, else
        the local SQLite store under run_root)."""
        self.registry_url: str | None = None
        self.registry_prefix = "dsqn"
        self.run_root = "runs"
        self.run_id: str | None = None
        """The run's id in the registry and metrics (default: Tune's trial id)."""
        self.sweep: str | None = None
        """Name of the sweep a trial belongs to (recorded with it)."""
        self.metrics_port: int | None = None
        """Serve the run's Prometheus metrics on this port (0: any free one; None: off)."""
        self.metrics_host = "127.0.0.1"
        from dsqn_rllib.rllib.callbacks import RunObserver

        self.callbacks_class = RunObserver
        # Network (``rl_module(model_config=...)``)
        self._model_config = dict(NETWORK_DEFAULTS)
        self._rl_module_spec = RLModuleSpec(module_class=QNetworkRLModule)
        # Sampling: our lockstep vector runners, two requests in flight each.
        self.env_runner_cls = VectorEnvRunner
        self.num_env_runners = 2
        self.num_envs_per_env_runner = 4
        self.num_cpus_per_env_runner = 1
        self.max_requests_in_flight_per_env_runner = 2
        # Our runners have no connector state: RLlib would otherwise fetch every runner's
        # whole state (weights included) once per iteration, blocking the learner.
        self.merge_env_runner_states = False
        self.broadcast_env_runner_states = False
        self.restart_failed_env_runners = True
        self.max_num_env_runner_restarts = 1000
        self.env_runner_restore_timeout_s = 120
        self._learner_class = FusedAdamDQNLearner
        self.num_learners = 0
        # learner_device "auto" holds for a default config too: this machine's GPU, if any.
        self.num_gpus_per_learner = 1 if self.learner_uses_gpu else 0
        # An iteration is wall time, not a sample count: the pipeline streams.
        self.min_time_s_per_iteration = 2.0
        self.min_sample_timesteps_per_iteration = 0
        self.min_train_timesteps_per_iteration = 0
        # Evaluation: the paper's protocol (dsqn_rllib.rllib.paper_evaluation) when an
        # interval is set, in iterations (evaluation_interval) or in env steps:
        from dsqn_rllib.rllib.paper_evaluation import paper_protocol_evaluation

        self.evaluation_interval_env_steps: int | None = None
        """Evaluate each time this many env steps have passed (the paper: 250k), instead of
        every ``evaluation_interval`` iterations (an iteration is wall time)."""
        self.custom_evaluation_function = paper_protocol_evaluation
        self.evaluation_duration = 30
        self.evaluation_duration_unit = "episodes"
        self.evaluation_config = {"explore_epsilon": PAPER_EVAL_EPSILON}
        self.log_level = "ERROR"

    # --- builder methods ------------------------------------------------------------------

    def pipeline(
        self,
        *,
        train_every: int | None = None,
        buffer_size: int | None = None,
        sticky_actions: bool | None = None,
        max_episode_frames: int | None = None,
        silent_layer_patience: int | None = None,
        learner_device: str | None = None,
        env_steps_limit: int | None = None,
    ) -> DSQNConfig:
        """Options of the actor -> replay -> learner pipeline that DQNConfig has no field for
        (``buffer_size`` sets ``replay_buffer_config["capacity"]``)."""
        if train_every is not None:
            self.train_every = train_every
        if buffer_size is not None:
            self.replay_buffer_config = {**self.replay_buffer_config, "capacity": buffer_size}
        if sticky_actions is not None:
            self.sticky_actions = sticky_actions
        if max_episode_frames is not None:
            self.max_episode_frames = max_episode_frames
        if silent_layer_patience is not None:
            self.silent_layer_patience = silent_layer_patience
        if learner_device is not None:
            self.learner_device = learner_device
            self.num_gpus_per_learner = 1 if self.learner_uses_gpu else 0
        if env_steps_limit is not None:
            self.env_steps_limit = env_steps_limit
        return self

    def evaluation(
        self, *, evaluation_interval_env_steps: int | None = None, **kwargs: Any
    ) -> DSQNConfig:
        """RLlib's ``evaluation()`` (``evaluation_interval``, ``evaluation_duration``,
        ``evaluation_parallel_to_training``: overlapped with training in a Ray task,
        ``evaluation_config={"explore_epsilon": ...}``), plus ``evaluation_interval_env_steps``."""
        super().evaluation(**kwargs)
        if evaluation_interval_env_steps is not None:
            self.evaluation_interval_env_steps = evaluation_interval_env_steps
        return self

    def observability(
        self,
        *,
        registry: bool | None = None,
        registry_url: str | None = None,
        registry_prefix: str | None = None,
        run_root: str | None = None,
        run_id: str | None = None,
        sweep: str | None = None,
        metrics_port: int | None = None,
        metrics_host: str | None = None,
    ) -> DSQNConfig:
        """The run registry and the Prometheus endpoint, kept by ``RunObserver`` (the
        password of a Redis registry comes from $DSQN_REDIS_PASSWORD, never from here)."""
        for name, value in locals().items():
            if name != "self" and value is not None:
                setattr(self, name, value)
        return self

    # --- derived views --------------------------------------------------------------------

    @property
    def game(self) -> str | None:
        """The ALE ROM id when ``env`` names an Atari game, else None."""
        return resolve_env(self.env)[0]

    @property
    def is_atari(self) -> bool:
        return self.game is not None

    # (Not ``buffer_size`` / ``learning_starts``: AlgorithmConfig reserves those deprecated names.)
    @property
    def replay_capacity(self) -> int:
        return int(self.replay_buffer_config.get("capacity", 1_000_000))

    @property
    def warmup_steps(self) -> int:
        """Env steps in the replay before the first update."""
        return int(self.num_steps_sampled_before_learning_starts)

    @property
    def learner_uses_gpu(self) -> bool:
        import torch

        if self.learner_device == "cuda":
            return True
        return self.learner_device == "auto" and torch.cuda.is_available()

    @property
    def network(self) -> dict[str, Any]:
        """The network's options: NETWORK_DEFAULTS overridden by ``rl_module(model_config)``."""
        user = {k: v for k, v in self._model_config.items() if k not in _DQN_AUTO_KEYS}
        return {**NETWORK_DEFAULTS, **user}

    @property
    def model_kind(self) -> ModelKind:
        return ModelKind(self.network["model"])

    @property
    def spiking(self) -> SpikingConfig:
        net = self.network
        return spiking_config(**{k: net[k] for k in _SPIKING_KEYS})

    def net_options(self) -> dict[str, Any]:
        """Keyword options of ``build_q_network`` for this config's model and env."""
        net = self.network
        options: dict[str, Any] = {"bias": net["bias"], "precision": Precision(net["precision"])}
        if not self.is_atari:
            options["hidden_sizes"] = tuple(int(h) for h in net["hidden_sizes"])
        if self.model_kind is ModelKind.DSQN:
            spiking = self.spiking
            options.update({k: getattr(spiking, k) for k in _SPIKING_KEYS})
        return options

    def epsilon_at(self, step: int) -> float:
        """The exploration rate after ``step`` env steps (piecewise linear, then constant)."""
        schedule = self.epsilon
        if isinstance(schedule, (int, float)):
            return float(schedule)
        points = [(int(t), float(v)) for t, v in schedule]
        if step <= points[0][0]:
            return points[0][1]
        for (t0, v0), (t1, v1) in itertools.pairwise(points):
            if step < t1:
                return v0 + (step - t0) / max(1, t1 - t0) * (v1 - v0)
        return points[-1][1]

    @property
    def eval_epsilon(self) -> float:
        return float((self.evaluation_config or {}).get("explore_epsilon", PAPER_EVAL_EPSILON))

    # --- RLlib hooks ------------------------------------------------------------------------

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        # The RLModule reads the resolved network options and the env-dependent ones.
        return super()._model_config_auto_includes | {
            "net_options": self.net_options(),
            "model": self.network["model"],
            # (Not "spike_init": that is the user's option, which model_config would override.)
            "spike_init_spec": {
                "kind": self.network["spike_init"],
                "target_rate": self.network["spike_init_rate"],
                "game": self.game,
                "seed": self.seed or 0,
            },
        }

    def _validate_evaluation_settings(self) -> None:
        from dsqn_rllib.rllib.paper_evaluation import paper_protocol_evaluation

        # The paper's protocol runs its own envs, in parallel as a Ray task: RLlib's rules for
        # evaluation EnvRunners (parallel needs some) do not apply to it.
        if self.custom_evaluation_function is not paper_protocol_evaluation:
            super()._validate_evaluation_settings()

    def validate(self) -> None:
        """RLlib's checks, then ours: each a one-line ``ConfigError``."""
        self.validate_dsqn()
        super().validate()

    def validate_dsqn(self) -> None:
        """Our options only (no RLlib check): safe to call before ``ray.init``."""
        game, _ = resolve_env(self.env)  # raises on an unknown env
        net = self.network
        unknown = sorted(set(net) - set(NETWORK_DEFAULTS) - _RLLIB_MODEL_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown model_config option(s) {unknown}; allowed: "
                f"{', '.join(sorted(NETWORK_DEFAULTS))}"
            )
        try:
            kind = ModelKind(net["model"])
        except ValueError:
            raise ConfigError(f"model must be dsqn or dqn, got {net['model']!r}") from None
        try:
            self.spiking  # noqa: B018 (validates T, readout, surrogate, tau, thresholds)
            parse_precision(net["precision"])
        except ValueError as err:
            raise ConfigError(str(err)) from None
        try:
            spike_init = SpikeInit(net["spike_init"])
        except ValueError:
            allowed = ", ".join(s.value for s in SpikeInit)
            raise ConfigError(
                f"spike_init must be one of {allowed}, got {net['spike_init']!r}"
            ) from None
        if spike_init is SpikeInit.THRESHOLD_AWARE and (kind is not ModelKind.DSQN or not game):
            raise ConfigError("spike_init threshold-aware applies to a DSQN on an Atari game")
        check_number("spike_init_rate", net["spike_init_rate"], 0.0, 1.0, low_open=True)
        if net["spike_init_rate"] >= 1.0:
            raise ConfigError(f"spike_init_rate must be < 1, got {net['spike_init_rate']!r}")
        hidden = net["hidden_sizes"]
        if (
            not isinstance(hidden, (tuple, list))
            or not hidden
            or not all(is_int(h) and h >= 1 for h in hidden)
        ):
            raise ConfigError(f"hidden_sizes must be positive integers, got {hidden!r}")
        if self.dueling:
            raise ConfigError(
                "dueling heads are not supported by the DSQN: set .training(dueling=False)"
            )
        if self.num_atoms != 1:
            raise ConfigError(
                f"distributional DQN (num_atoms={self.num_atoms}) is not supported by the "
                "DSQN: set .training(num_atoms=1)"
            )
        if self.td_error_loss_fn not in ("mse", "huber"):
            raise ConfigError(
                f"td_error_loss_fn must be mse or huber, got {self.td_error_loss_fn!r}"
            )
        if self.learner_device not in ("auto", "cpu", "cuda"):
            raise ConfigError(
                f"learner_device must be auto, cpu or cuda, got {self.learner_device!r}"
            )
        if self.metrics_port is not None:
            check_int("metrics_port", self.metrics_port, 0)
            if self.metrics_port > 65535:
                raise ConfigError(f"metrics_port must be <= 65535, got {self.metrics_port}")
        if self.registry:
            from dsqn_rllib.ops.registry import RegistryConfig

            RegistryConfig(url=self.registry_url, prefix=self.registry_prefix).validate()
        check_number("lr", self.lr, low=0.0, low_open=True)
        check_number("adam_epsilon", self.adam_epsilon, low=0.0, low_open=True)
        if self.grad_clip is not None:
            check_number("grad_clip", self.grad_clip, low=0.0, low_open=True)
        check_number("gamma", self.gamma, low=0.0, high=1.0)
        check_number("evaluation_config['explore_epsilon']", self.eval_epsilon, 0.0, 1.0)
        if self.evaluation_duration != "auto":
            check_int("evaluation_duration", self.evaluation_duration, 1)
        for name in ("evaluation_interval_env_steps", "env_steps_limit"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 0 if name.startswith("evaluation") else 1)
        counts = ("train_batch_size", "train_every", "target_network_update_freq", "n_step")
        for name in counts:
            check_int(name, getattr(self, name), 1)
        for name in ("num_env_runners", "silent_layer_patience", "seed"):
            check_int(name, getattr(self, name) or 0, 0)
        if not self._is_frozen:  # numpy counts (gymnasium spaces, np.arange grids) as Python's
            for name in (*counts, "num_env_runners", "num_envs_per_env_runner", "seed"):
                setattr(self, name, plain(getattr(self, name)))
        if (self.num_learners or 0) > 1:
            raise ConfigError(
                f"PipelinedDQN trains with one learner (num_learners 0: in the driver's "
                f"process, or 1: a learner actor), got num_learners={self.num_learners}"
            )
        check_int("num_envs_per_env_runner", self.num_envs_per_env_runner, 1)
        check_int("max_episode_frames", self.max_episode_frames, 1)
        check_int(
            "num_steps_sampled_before_learning_starts",
            self.num_steps_sampled_before_learning_starts,
            0,
        )
        check_int("replay_buffer_config['capacity']", self.replay_capacity, self.train_batch_size)
        if not isinstance(self.epsilon, (int, float)):
            points = list(self.epsilon)
            if not points or any(len(p) != 2 for p in points):
                raise ConfigError(f"epsilon must be a number or [(step, value), ...], got {points}")
            for _, value in points:
                check_number("epsilon", value, low=0.0, high=1.0)
        else:
            check_number("epsilon", self.epsilon, low=0.0, high=1.0)


# Keys RLlib's own DefaultModelConfig may put into a model_config; they are not the network's.
_RLLIB_MODEL_KEYS = set(_DQN_AUTO_KEYS) | {
    "net_options",
    "spike_init_spec",
    "fcnet_hiddens",
    "fcnet_activation",
    "fcnet_kernel_initializer",
    "fcnet_kernel_initializer_kwargs",
    "fcnet_bias_initializer",
    "fcnet_bias_initializer_kwargs",
    "conv_filters",
    "conv_activation",
    "conv_kernel_initializer",
    "conv_kernel_initializer_kwargs",
    "conv_bias_initializer",
    "conv_bias_initializer_kwargs",
    "head_fcnet_hiddens",
    "head_fcnet_activation",
    "head_fcnet_kernel_initializer",
    "head_fcnet_kernel_initializer_kwargs",
    "head_fcnet_bias_initializer",
    "head_fcnet_bias_initializer_kwargs",
    "free_log_std",
    "log_std_clip_param",
    "vf_share_layers",
    "use_lstm",
    "max_seq_len",
    "lstm_cell_size",
    "lstm_use_prev_action",
    "lstm_use_prev_reward",
    "lstm_kernel_initializer",
    "lstm_kernel_initializer_kwargs",
    "lstm_bias_initializer",
    "lstm_bias_initializer_kwargs",
}
