"""Checks of a run against the machine it is about to start on, before ``ray.init``.

``TrainConfig.validate`` checks values on their own and runs anywhere (remote evaluation tasks
rebuild the config from JSON); what depends on *this* machine lives here and runs once, in the
driver, before Ray starts:

    preflight(cfg)        # ConfigError (one line) when the run cannot work here

* memory: the replay rings (reserved up front, filled over hours: an over-sized buffer fails
  only when it fills) and the learner's T x batch activations, against the memory available to
  this process (``MemAvailable``, or a cgroup limit when lower);
* the learner device: ``cuda`` without a visible GPU (the learner lives in the driver);
* the metrics endpoint: the host resolves and the port can be bound.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from dsqn_rllib.config import TrainConfig
from dsqn_rllib.errors import ConfigError

# Bytes per neuron, simulation step and sample of one learner update (float32): the spike
# train the next layer's backward needs, the membrane for the surrogate and the input current
# (measured: peak RSS of a DSQN forward + backward on CPU grows 10.4 bytes per unit-step from
# T 8 to 32 at batch 128), plus the target net's forward without a graph (two tensors alive).
ACTIVATION_BYTES_PER_UNIT_STEP = 20
# What a run needs besides replay and activations: torch and Ray's driver, and each env
# runner's process (its own torch and network copy).
BASELINE_BYTES = 1 << 30
RUNNER_BYTES = 300 << 20
# Share of the available memory a run may plan to use (Ray, the OS and the page cache need the
# rest; the replay is touched page by page, so an estimate near the limit fails hours later).
USABLE_SHARE = 0.9


@dataclass(frozen=True)
class MemoryNeeds:
    """What a run will allocate, in bytes."""

    replay: int
    activations: int
    baseline: int = BASELINE_BYTES
    """Processes: the driver, plus one per env runner."""

    @property
    def total(self) -> int:
        return self.replay + self.activations + self.baseline


def _obs_shape(cfg: TrainConfig) -> tuple[int, ...]:
    if cfg.is_atari:
        return (4, 84, 84)
    import gymnasium as gym

    env = gym.make(cfg.env)  # type: ignore[arg-type]
    try:
        return tuple(env.observation_space.shape or (1,))
    finally:
        env.close()


def units_per_step(cfg: TrainConfig, obs_shape: tuple[int, ...]) -> int:
    """Neurons (LIF / ReLU / LI units) of one sample at one simulation step."""
    from dsqn_rllib.snn.networks import build_conv_stack, build_mlp_stack

    num_actions = 18  # the largest ALE action set: an upper bound, no env needed
    if cfg.is_atari:
        stack = build_conv_stack(obs_shape, num_actions, bias=False)  # type: ignore[arg-type]
    else:
        stack = build_mlp_stack(math.prod(obs_shape), num_actions, False, cfg.hidden_sizes)
    return sum(shape.out_units for shape in stack.shapes)


def memory_needs(cfg: TrainConfig, obs_shape: tuple[int, ...] | None = None) -> MemoryNeeds:
    """Replay and learner-activation bytes of ``cfg`` (frames as the replay stores them)."""
    shape = obs_shape or _obs_shape(cfg)
    # Atari: one uint8 frame per entry (stacks are rebuilt); vector envs: float32 observations.
    frame_bytes = math.prod(shape[1:]) if cfg.is_atari else 4 * math.prod(shape)
    replay = cfg.buffer_size * (frame_bytes + 16)  # + action, reward, flags (FrameReplayBuffer)
    steps = cfg.spiking.T if cfg.model.value == "dsqn" else 1
    per_sample = units_per_step(cfg, shape) * steps * ACTIVATION_BYTES_PER_UNIT_STEP
    activations = cfg.train_batch_size * per_sample
    baseline = BASELINE_BYTES + cfg.num_env_runners * RUNNER_BYTES
    return MemoryNeeds(replay=replay, activations=activations, baseline=baseline)


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, or the cgroup's room when lower
    (a container's limit is what the OOM killer enforces); None where neither is readable."""
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        usage = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            candidates.append(max(0, int(limit) - int(usage)))
    except (OSError, ValueError):
        pass
    return min(candidates) if candidates else None


def gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def check_memory(cfg: TrainConfig, available: int | None = None) -> MemoryNeeds:
    """ConfigError (one line) when the run needs more memory than this machine has."""
    needs = memory_needs(cfg)
    available = available_memory() if available is None else available
    if available is None or needs.total <= USABLE_SHARE * available:
        return needs
    parts = []
    if needs.replay >= needs.activations:
        parts.append(f"replay {gb(needs.replay)} for --buffer-size {cfg.buffer_size:,}")
    steps = f"--T {cfg.spiking.T} x " if cfg.model.value == "dsqn" else ""
    parts.append(
        f"learner activations {gb(needs.activations)} for {steps}--train-batch-size "
        f"{cfg.train_batch_size}"
    )
    if needs.replay < needs.activations:
        parts.append(f"replay {gb(needs.replay)}")
    fix = "--buffer-size" if needs.replay >= needs.activations else "--T or --train-batch-size"
    raise ConfigError(
        f"this run needs about {gb(needs.total)} of memory ({', '.join(parts)}), "
        f"this machine has {gb(available)} available: lower {fix} (or try --preset laptop)"
    )


def check_learner_device(cfg: TrainConfig) -> None:
    """``--learner-device cuda`` needs a GPU in this process (the learner runs in the driver)."""
    if cfg.learner_device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        why = "this PyTorch has no CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise ConfigError(
            f"--learner-device cuda, but {why} (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use --learner-device cpu "
            "or auto"
        )


def check_metrics_endpoint(host: str, port: int | None) -> None:
    """The metrics host resolves and ``port`` can be bound there (0: any free port).

    The probe binds the way the endpoint will (``SO_REUSEADDR``, as ``http.server`` does), so a
    port in TIME_WAIT passes and one another process listens on fails."""
    if port is None:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError(
            f"--metrics-host {host!r} does not resolve ({reason}); give an address of this "
            "machine, e.g. 127.0.0.1 or 0.0.0.0"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            if port and err.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
                raise ConfigError(
                    f"--metrics-port {port} is already in use on {host}; pick another port or "
                    "--metrics-port 0 (any free port, printed at start)"
                ) from None
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {err.strerror or err}; give an address "
                "of this machine (127.0.0.1, or 0.0.0.0 for every interface)"
            ) from None


def preflight(cfg: TrainConfig, available: int | None = None) -> MemoryNeeds:
    """Every machine check of ``cfg`` (validated), before Ray starts; ConfigError on the first
    that fails. Returns the memory the run was planned with."""
    check_learner_device(cfg)
    check_metrics_endpoint(cfg.metrics_host, cfg.metrics_port)
    return check_memory(cfg, available)
