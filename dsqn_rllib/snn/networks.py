"""Q-networks: DSQN (Chen et al. 2022), its DQN twin (Mnih et al. 2015), and MLP variants.

All four share one interface::

    net = DSQN(obs_shape=(4, 84, 84), num_actions=6, T=8, readout="max-mem")
    q = net(obs)                           # (B, num_actions); uint8 obs are scaled by 1/255
    q, stats = net(obs, return_stats=True) # + per-layer firing rates (spiking nets only)

The conv nets take a frame stack either channel-first ``(C, H, W)`` (our Atari envs) or
channel-last ``(H, W, C)`` (RLlib's Atari wrappers, old and new stack): the layout is read from
the shape (``image_layout``), exposed as ``net.channels_last``, and an (H, W, C) batch is
permuted to (C, H, W) inside forward, so both layouts compute the same function.

Layers live in ``net.layers`` (an ordered ``nn.ModuleDict``) in network order, so
``net.modules()`` lists every ``nn.Conv2d``/``nn.Linear`` in the order data flows through them.

A spiking network has no hidden state: each forward simulates T steps from V_0 = V_reset.
The observation is a constant input current, so the first layer (the learnable encoder, whose
LIF turns it into spikes) is computed once and held for all T steps.
"""

from __future__ import annotations

import dataclasses
import itertools
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from dsqn_rllib.snn.neurons import (
    NeuronParams,
    Surrogate,
    initial_membrane,
    li_multistep,
    li_step,
    lif_constant_input,
    lif_multistep,
    lif_step,
    parse_surrogate,
)
from dsqn_rllib.snn.precision import (
    Precision,
    apply_layer,
    parse_precision,
    resolve_precision,
    runs_in_bf16,
)
from dsqn_rllib.snn.readouts import MEMBRANE_READOUTS, Readout, firing_rate, parse_readout


class ConvSpec(NamedTuple):
    """One convolution: ``out_channels`` C, ``kernel`` K, ``stride`` S (written "CcKsS")."""

    out_channels: int
    kernel: int
    stride: int


# Mnih et al. 2015 ("Nature CNN"): 32C8S4 - 64C4S2 - 64C3S1 - 512; DSQN keeps the same stack.
NATURE_CONVS: tuple[ConvSpec, ...] = (ConvSpec(32, 8, 4), ConvSpec(64, 4, 2), ConvSpec(64, 3, 1))
NATURE_HIDDEN = 512
MLP_HIDDEN: tuple[int, ...] = (256, 256)
MAX_IMAGE_CHANNELS = 16
"""The channel axis of an image observation is its small one: a stack of 4 grayscale frames
(4) or of 4 RGB frames (12) fits; the spatial axes of a Nature-CNN input are >= 36."""


class ExecutionPath(str, Enum):
    """How a spiking network runs its T steps. Every path computes the same function."""

    AUTO = "auto"
    """The fastest measured path for the device (see ``resolve_execution_path``)."""
    REFERENCE = "reference"
    """Step by step: every layer at t = 1, then t = 2, ... Mirrors the equations."""
    FOLDED = "folded"
    """Layer by layer: each conv/linear runs once on all T steps folded into the batch, and
    each LIF layer is one fused autograd node over T (hand-written backward)."""


def parse_execution_path(name: str | ExecutionPath) -> ExecutionPath:
    try:
        return ExecutionPath(name)
    except ValueError:
        allowed = ", ".join(p.value for p in ExecutionPath)
        raise ValueError(f"unknown execution path {name!r}; allowed: {allowed}") from None


# Measured by benchmarks/bench_core.py (learner update, batch 32..512, T = 4 and 8): on a
# 2-core x86 CPU the folded path beats the step loop at every size; on CUDA folding is what
# removes T-fold kernel launches, so it is the default everywhere.
_FASTEST_PATH: dict[str, ExecutionPath] = {
    "cpu": ExecutionPath.FOLDED,
    "cuda": ExecutionPath.FOLDED,
}


def resolve_execution_path(path: ExecutionPath, device: torch.device) -> ExecutionPath:
    """``AUTO`` becomes the fastest measured path on ``device``; other paths stay as asked."""
    if path is not ExecutionPath.AUTO:
        return path
    return _FASTEST_PATH.get(device.type, ExecutionPath.FOLDED)


@dataclass(frozen=True)
class SpikingConfig:
    """Everything that makes a Q-network spiking. Defaults: the authors' DSQN code."""

    # Simulation
    T: int = 8
    """Simulation steps per forward pass (the paper's default 8)."""
    readout: Readout = Readout.MAX_MEM
    """How Q is read from the output layer: last-mem, max-mem (paper's best), mean-mem,
    or firing-rate (Liu et al. 2022)."""

    # Neurons (see dsqn_rllib.snn.neurons)
    tau: float = 2.0
    """Membrane time constant τ (>= 1)."""
    v_threshold: float = 1.0
    """Firing threshold V_th."""
    v_reset: float = 0.0
    """Reset / resting potential V_reset (= V_0)."""
    surrogate: Surrogate = Surrogate.ATAN
    """Surrogate gradient of the spike: atan (α = 2), sigmoid, rectangular."""
    surrogate_alpha: float | None = None
    """α of the surrogate; None takes its default."""
    detach_reset: bool = True
    """Detach the hard reset from the graph (the authors' code)."""

    # Layers
    bias: bool = True
    """Biases in every conv/linear layer (the authors' code; the paper's text omits them)."""

    # Execution
    execution: ExecutionPath = ExecutionPath.AUTO
    """reference (step loop), folded (T folded into the batch), or auto (fastest measured)."""

    def __post_init__(self) -> None:
        if not _is_count(self.T):
            raise ValueError(f"T (simulation steps) must be an integer >= 1, got {self.T!r}")
        object.__setattr__(self, "T", int(self.T))
        object.__setattr__(self, "readout", parse_readout(self.readout))
        object.__setattr__(self, "surrogate", parse_surrogate(self.surrogate))
        object.__setattr__(self, "execution", parse_execution_path(self.execution))
        self.neuron_params()  # validates τ, V_th, V_reset, α

    def neuron_params(self) -> NeuronParams:
        return NeuronParams(
            tau=self.tau,
            v_threshold=self.v_threshold,
            v_reset=self.v_reset,
            surrogate=self.surrogate,
            surrogate_alpha=self.surrogate_alpha,
            detach_reset=self.detach_reset,
        )


def spiking_config(config: SpikingConfig | None = None, **overrides: Any) -> SpikingConfig:
    """``config`` (or the defaults) with ``overrides`` applied; unknown names are one line."""
    names = {f.name for f in dataclasses.fields(SpikingConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"unknown spiking option(s) {unknown}; allowed: {', '.join(sorted(names))}"
        )
    return dataclasses.replace(config or SpikingConfig(), **overrides)


# ------------------------------------------------------------------------------------------------
# Shapes, validation and layer construction shared by every network.
# ------------------------------------------------------------------------------------------------


def _is_count(value: object, minimum: int = 1) -> bool:
    """An integer >= ``minimum``: Python's or numpy's (gymnasium's ``Discrete.n`` is
    ``np.int64``, a space's shape may hold numpy integers); never a bool."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= minimum


def _check_num_actions(num_actions: int) -> int:
    if not _is_count(num_actions):
        raise ValueError(f"num_actions must be an integer >= 1, got {num_actions!r}")
    return int(num_actions)


def _check_obs_shape(obs_shape: Sequence[int], rank: int, what: str) -> tuple[int, ...]:
    shape = tuple(obs_shape)
    if len(shape) != rank or not all(_is_count(d) for d in shape):
        raise ValueError(f"obs_shape must be {what} of positive integers, got {obs_shape!r}")
    return tuple(int(d) for d in shape)


def min_image_size(convs: Sequence[ConvSpec] = NATURE_CONVS) -> int:
    """The smallest height (and width) that leaves every unpadded conv of ``convs`` at
    least one output pixel: 36 for the Nature CNN."""
    size = 1
    for spec in reversed(convs):
        size = (size - 1) * spec.stride + spec.kernel
    return size


class ImageLayout(NamedTuple):
    """An image observation shape read as a frame stack: the ``(C, H, W)`` the convs see and
    whether observations arrive channel-last ``(H, W, C)``."""

    chw: tuple[int, int, int]
    channels_last: bool


def image_layout(obs_shape: Sequence[int], convs: Sequence[ConvSpec] = NATURE_CONVS) -> ImageLayout:
    """Read ``obs_shape`` as ``(C, H, W)`` or ``(H, W, C)``: the channel axis is the small one
    (<= ``MAX_IMAGE_CHANNELS``), both spatial axes must fit the conv stack. Anything else,
    including a shape both readings fit, is a one-line ``ValueError``."""
    shape = tuple(obs_shape)
    least = min_image_size(convs)
    readings: list[ImageLayout] = []
    if len(shape) == 3 and all(_is_count(d) for d in shape):
        a, b, c = (int(d) for d in shape)
        if a <= MAX_IMAGE_CHANNELS and min(b, c) >= least:
            readings.append(ImageLayout((a, b, c), channels_last=False))
        if c <= MAX_IMAGE_CHANNELS and min(a, b) >= least:
            readings.append(ImageLayout((c, a, b), channels_last=True))
    if len(readings) == 1:
        return readings[0]
    why = "is ambiguous" if readings else "is not an image stack"
    raise ValueError(
        f"obs_shape {shape!r} {why}: give (C, H, W) or (H, W, C) with "
        f"C <= {MAX_IMAGE_CHANNELS} and H, W >= {least}, or a 1-D vector (n,) for the MLP"
    )


def _check_hidden_sizes(hidden_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(hidden_sizes)
    if not sizes or not all(_is_count(h) for h in sizes):
        raise ValueError(f"hidden_sizes must be positive integers, got {hidden_sizes!r}")
    return tuple(int(h) for h in sizes)


def conv_output_size(size: int, spec: ConvSpec) -> int:
    """Spatial size after an unpadded convolution."""
    return (size - spec.kernel) // spec.stride + 1


@dataclass(frozen=True)
class LayerShape:
    """What accounting needs of one layer: its dense multiply-accumulates per sample and the
    number of output units (the neurons of the LIF/ReLU that follows it)."""

    name: str
    macs: int
    out_units: int


@dataclass
class ConvStack:
    """Conv layers + hidden linear + head, with every size computed from the observation."""

    layers: nn.ModuleDict
    shapes: list[LayerShape] = field(default_factory=list)


def build_conv_stack(
    obs_shape: tuple[int, int, int],
    num_actions: int,
    bias: bool,
    convs: Sequence[ConvSpec] = NATURE_CONVS,
    hidden: int = NATURE_HIDDEN,
) -> ConvStack:
    channels, height, width = obs_shape
    layers: dict[str, nn.Module] = {}
    shapes: list[LayerShape] = []
    for i, spec in enumerate(convs, start=1):
        out_h, out_w = conv_output_size(height, spec), conv_output_size(width, spec)
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"obs_shape {obs_shape} is too small for the conv stack "
                f"({'-'.join(f'{c.out_channels}C{c.kernel}S{c.stride}' for c in convs)}): "
                f"layer conv{i} gets {height}x{width}"
            )
        name = f"conv{i}"
        layers[name] = nn.Conv2d(channels, spec.out_channels, spec.kernel, spec.stride, bias=bias)
        units = spec.out_channels * out_h * out_w
        shapes.append(LayerShape(name, units * channels * spec.kernel**2, units))
        channels, height, width = spec.out_channels, out_h, out_w
    flat = channels * height * width
    layers["fc"] = nn.Linear(flat, hidden, bias=bias)
    shapes.append(LayerShape("fc", flat * hidden, hidden))
    layers["out"] = nn.Linear(hidden, num_actions, bias=bias)
    shapes.append(LayerShape("out", hidden * num_actions, num_actions))
    return ConvStack(nn.ModuleDict(layers), shapes)


def build_mlp_stack(
    obs_dim: int, num_actions: int, bias: bool, hidden_sizes: Sequence[int] = MLP_HIDDEN
) -> ConvStack:
    hidden_sizes = _check_hidden_sizes(hidden_sizes)
    layers: dict[str, nn.Module] = {}
    shapes: list[LayerShape] = []
    sizes = [obs_dim, *hidden_sizes]
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
        layers[f"fc{i}"] = nn.Linear(fan_in, fan_out, bias=bias)
        shapes.append(LayerShape(f"fc{i}", fan_in * fan_out, fan_out))
    layers["out"] = nn.Linear(sizes[-1], num_actions, bias=bias)
    shapes.append(LayerShape("out", sizes[-1] * num_actions, num_actions))
    return ConvStack(nn.ModuleDict(layers), shapes)


class QNetwork(nn.Module):
    """Base of every Q-network here: observation checks and scaling, layer bookkeeping."""

    is_spiking: bool = False

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        num_actions: int,
        stack: ConvStack,
        channels_last: bool = False,
        precision: str | Precision = Precision.FP32,
    ) -> None:
        super().__init__()
        self._precision = parse_precision(precision)
        self.obs_shape = obs_shape
        """The observation shape as the env gives it (what ``forward`` checks)."""
        self.num_actions = num_actions
        self._channels_last = channels_last
        self.layers = stack.layers
        self.layer_shapes: tuple[LayerShape, ...] = tuple(stack.shapes)

    @property
    def precision(self) -> Precision:
        """How the learner update computes on this network's current device (``auto``
        resolved); see ``dsqn_rllib.snn.precision``. Acting is fp32 either way."""
        return resolve_precision(self._precision, self.layers["out"].weight.device)

    def layer(self, name: str, x: Tensor, float32_output: bool = True) -> Tensor:
        """Layer ``name`` on ``x``; in a learner update under ``Precision.BF16`` the hidden
        layers (not the encoder, which sees real-valued frames, nor the head) run in bf16,
        their result in fp32 unless ``float32_output`` is False."""
        hidden = self._is_hidden(name)
        return apply_layer(self.layers[name], x, self.precision, hidden, float32_output)

    def _is_hidden(self, name: str) -> bool:
        names = list(self.layers.keys())
        return name not in (names[0], names[-1])

    def _computes_in_bf16(self, name: str) -> bool:
        """Whether layer ``name`` runs in bf16 in this forward (see ``layer``)."""
        return runs_in_bf16(self.layers[name], self.precision, self._is_hidden(name))

    @property
    def channels_last(self) -> bool:
        """True when observations arrive as ``(H, W, C)`` (forward permutes them to C, H, W)."""
        return self._channels_last

    def prepare_obs(self, obs: Tensor) -> Tensor:
        """Check ``obs`` is ``(B, *obs_shape)``; an (H, W, C) batch becomes (B, C, H, W);
        uint8 → float / 255, float used as given."""
        if not isinstance(obs, Tensor):
            raise ValueError(f"observation must be a torch.Tensor, got {type(obs).__name__}")
        if obs.dim() != len(self.obs_shape) + 1 or tuple(obs.shape[1:]) != self.obs_shape:
            expected = ", ".join(["B", *map(str, self.obs_shape)])
            raise ValueError(f"observation shape {tuple(obs.shape)} does not match ({expected})")
        if self._channels_last:
            obs = self._channels_first(obs)
        dtype = self.layers["out"].weight.dtype
        if obs.dtype == torch.uint8:
            return obs.to(dtype) / 255.0
        if obs.is_floating_point():
            return obs.to(dtype)
        raise ValueError(
            f"observation dtype {obs.dtype} is not supported; use uint8 (scaled by 1/255) "
            "or a floating-point dtype (used as given)"
        )

    def _channels_first(self, obs: Tensor) -> Tensor:
        """(B, H, W, C) → (B, C, H, W). On a CPU the permuted view is NCHW in channels-last
        memory, the layout ``conv_input`` runs the convs in: no copy. Elsewhere it is copied
        into plain NCHW (the uint8 frame, before scaling, is the cheaper copy)."""
        x = obs.permute(0, 3, 1, 2)
        return x if x.device.type == "cpu" else x.contiguous()

    @staticmethod
    def conv_input(x: Tensor) -> Tensor:
        """A frame batch in the memory layout the convs run fastest in on its device: on a CPU
        oneDNN runs them in NHWC (channels-last), which the layers after keep (the convs
        output channels-last, the LIF layers write their spikes in their input's layout).
        The same function: a layout is only memory order, and ``flatten`` keeps the logical
        C, H, W order. On CUDA, plain NCHW (fp32 cuDNN gains nothing from NHWC)."""
        if x.dim() == 4 and x.device.type == "cpu":
            return x.contiguous(memory_format=torch.channels_last)
        return x

    @staticmethod
    def _flatten_features(x: Tensor, layer: nn.Module) -> Tensor:
        """Flatten conv feature maps ``(N, C, H, W)`` before a linear layer."""
        return x.flatten(1) if isinstance(layer, nn.Linear) and x.dim() > 2 else x


# ------------------------------------------------------------------------------------------------
# Dense (ANN) twins
# ------------------------------------------------------------------------------------------------


class DenseQNetwork(QNetwork):
    """ReLU after every layer but the last: the ANN the spiking nets are compared with."""

    def forward(self, obs: Tensor) -> Tensor:
        # NHWC convs on a CPU: a Nature-CNN update (batch 32, 2 cores) is ~11% faster.
        x = self.conv_input(self.prepare_obs(obs))
        names = list(self.layers.keys())
        for name in names[:-1]:
            x = torch.relu(self.layer(name, self._flatten_features(x, self.layers[name])))
        return self.layer(names[-1], x)


class DQN(DenseQNetwork):
    """Mnih et al. 2015: ``32C8S4-ReLU-64C4S2-ReLU-64C3S1-ReLU-512-ReLU-N``."""

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        bias: bool = True,
        precision: str | Precision = Precision.FP32,
    ) -> None:
        layout = image_layout(obs_shape)
        num_actions = _check_num_actions(num_actions)
        stack = build_conv_stack(layout.chw, num_actions, bias)
        shape = tuple(int(d) for d in obs_shape)
        super().__init__(shape, num_actions, stack, layout.channels_last, precision)


class MLP(DenseQNetwork):
    """The ANN twin of ``SpikingMLP`` for vector observations: ``obs-H-ReLU-H-ReLU-N``."""

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        bias: bool = True,
        hidden_sizes: Sequence[int] = MLP_HIDDEN,
        precision: str | Precision = Precision.FP32,
    ) -> None:
        shape = _check_obs_shape(obs_shape, 1, "(features,)")
        num_actions = _check_num_actions(num_actions)
        stack = build_mlp_stack(shape[0], num_actions, bias, hidden_sizes)
        super().__init__(shape, num_actions, stack, precision=precision)


# ------------------------------------------------------------------------------------------------
# Spiking networks
# ------------------------------------------------------------------------------------------------


@dataclass
class SpikeStats:
    """Firing rates (spikes per neuron per step, averaged over the batch) of each LIF layer,
    keyed by the layer that drives it; rates are detached 0-d tensors (no device sync)."""

    rates: dict[str, Tensor]
    neurons: dict[str, int]
    T: int

    def spikes_per_sample(self) -> float:
        """Total spikes one inference emits, over all layers and T steps."""
        return float(sum(self.rates[k].item() * self.neurons[k] * self.T for k in self.rates))


class SpikingQNetwork(QNetwork):
    """A stack of (layer → LIF) blocks ending in ``out`` → LI + a membrane readout, or in
    ``out`` applied to the mean firing rate (the firing-rate readout)."""

    is_spiking = True

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        num_actions: int,
        stack: ConvStack,
        config: SpikingConfig,
        channels_last: bool = False,
        precision: str | Precision = Precision.FP32,
    ) -> None:
        super().__init__(obs_shape, num_actions, stack, channels_last, precision)
        self.config = config
        self.neuron = config.neuron_params()
        self.T = config.T
        self.readout = config.readout
        # Units of each LIF layer, keyed by the layer whose current drives it.
        self.spiking_neurons = {s.name: s.out_units for s in self.layer_shapes[:-1]}

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"T={c.T}, readout={c.readout.value}, tau={c.tau}, v_threshold={c.v_threshold}, "
            f"v_reset={c.v_reset}, surrogate={c.surrogate.value}, execution={c.execution.value}"
        )

    @property
    def execution_path(self) -> ExecutionPath:
        """The path forward takes on this network's current device."""
        return resolve_execution_path(self.config.execution, self.layers["out"].weight.device)

    def forward(
        self, obs: Tensor, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, SpikeStats]:
        x = self.conv_input(self.prepare_obs(obs))
        if self.execution_path is ExecutionPath.REFERENCE:
            q, spikes = self._forward_reference(x)
        else:
            q, spikes = self._forward_folded(x)
        if not return_stats:
            return q
        # bf16 spikes (a bf16 update's) are averaged in fp32; fp32/fp64 ones in their dtype.
        rates = {
            name: s.detach().mean(dtype=torch.promote_types(s.dtype, torch.float32))
            for name, s in spikes.items()
        }
        return q, SpikeStats(rates, dict(self.spiking_neurons), self.T)

    def _forward_folded(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Layer by layer over all T steps; returns Q and each LIF layer's ``[T, B, ...]``."""
        T, batch = self.T, x.shape[0]
        names = list(self.layers.keys())
        encoder, hidden = names[0], names[1:-1]
        # Under a bf16 update a LIF layer hands a bf16 layer its spikes in bf16 and takes the
        # bf16 layer's currents as they are (both exact where the LIF kernels read and write).
        bf16 = {name: self._computes_in_bf16(name) for name in names}
        spike_dtypes = {
            a: torch.bfloat16 if bf16[b] else x.dtype for a, b in itertools.pairwise(names)
        }
        s_seq = lif_constant_input(self.layer(encoder, x), T, self.neuron, spike_dtypes[encoder])
        spikes = {encoder: s_seq}
        for name in hidden:
            features = self._flatten_features(s_seq.flatten(0, 1), self.layers[name])
            current = self.layer(name, features, float32_output=not bf16[name])
            s_seq = lif_multistep(current.unflatten(0, (T, batch)), self.neuron, spike_dtypes[name])
            spikes[name] = s_seq
        if self.readout is Readout.FIRING_RATE:
            return self.layer("out", firing_rate(s_seq)), spikes
        v_seq = li_multistep(
            self.layer("out", s_seq.flatten(0, 1)).unflatten(0, (T, batch)), self.neuron
        )
        return MEMBRANE_READOUTS[self.readout](v_seq), spikes

    def _forward_reference(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Step by step, the equations as written: every layer at t, then t + 1."""
        p = self.neuron
        names = list(self.layers.keys())
        encoder_current = self.layer(names[0], x)  # constant input: computed once
        membranes: dict[str, Tensor | None] = dict.fromkeys(names, None)
        spike_steps: dict[str, list[Tensor]] = {name: [] for name in names[:-1]}
        out_steps: list[Tensor] = []
        for _t in range(self.T):
            s: Tensor | None = None
            for name in names[:-1]:
                features = None if s is None else self._flatten_features(s, self.layers[name])
                current = encoder_current if features is None else self.layer(name, features)
                v = membranes[name]
                s, membranes[name] = lif_step(
                    current, initial_membrane(current, p) if v is None else v, p
                )
                spike_steps[name].append(s)
            assert s is not None
            if self.readout is Readout.FIRING_RATE:
                continue
            current = self.layer("out", s)
            v_out = membranes["out"]
            membranes["out"] = li_step(
                current, initial_membrane(current, p) if v_out is None else v_out, p
            )
            out_steps.append(membranes["out"])  # type: ignore[arg-type]
        spikes = {name: torch.stack(steps) for name, steps in spike_steps.items()}
        if self.readout is Readout.FIRING_RATE:
            return self.layer("out", firing_rate(spikes[names[-2]])), spikes
        return MEMBRANE_READOUTS[self.readout](torch.stack(out_steps)), spikes


class DSQN(SpikingQNetwork):
    """Chen et al. 2022: ``Input-32C8S4-LIF-64C4S2-LIF-64C3S1-LIF-Flatten-512-LIF-N-LI``.

    Keywords are the fields of ``SpikingConfig`` (``T``, ``readout``, ``tau``, ``v_threshold``,
    ``v_reset``, ``surrogate``, ``surrogate_alpha``, ``detach_reset``, ``bias``, ``execution``)
    and ``precision`` (``"fp32"``, ``"bf16"``: fp32 forward, bf16 backward; ``"auto"``).
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        config: SpikingConfig | None = None,
        precision: str | Precision = Precision.FP32,
        **options: Any,
    ) -> None:
        layout = image_layout(obs_shape)
        num_actions = _check_num_actions(num_actions)
        cfg = spiking_config(config, **options)
        stack = build_conv_stack(layout.chw, num_actions, cfg.bias)
        shape = tuple(int(d) for d in obs_shape)
        super().__init__(shape, num_actions, stack, cfg, layout.channels_last, precision)


class SpikingMLP(SpikingQNetwork):
    """DSQN's neurons and readouts on vector observations: ``obs-H-LIF-H-LIF-N-LI``."""

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        config: SpikingConfig | None = None,
        hidden_sizes: Sequence[int] = MLP_HIDDEN,
        precision: str | Precision = Precision.FP32,
        **options: Any,
    ) -> None:
        shape = _check_obs_shape(obs_shape, 1, "(features,)")
        num_actions = _check_num_actions(num_actions)
        cfg = spiking_config(config, **options)
        stack = build_mlp_stack(shape[0], num_actions, cfg.bias, hidden_sizes)
        super().__init__(shape, num_actions, stack, cfg, precision=precision)


class ModelKind(str, Enum):
    """The two families compared throughout the project."""

    DSQN = "dsqn"
    DQN = "dqn"


def build_q_network(
    model: str | ModelKind, obs_shape: Sequence[int], num_actions: int, **options: Any
) -> QNetwork:
    """DSQN/DQN for image observations (C, H, W) or (H, W, C); SpikingMLP/MLP for vectors (F,).

    ``options`` are ``SpikingConfig`` fields (spiking only), ``bias``, ``precision`` (fp32,
    bf16, auto: see ``dsqn_rllib.snn.precision``) and ``hidden_sizes`` (MLPs only).
    """
    try:
        kind = ModelKind(model)
    except ValueError:
        raise ValueError(f"unknown model {model!r}; allowed: dsqn, dqn") from None
    is_image = len(tuple(obs_shape)) != 1  # anything but a vector: the conv nets check it
    if kind is ModelKind.DQN:
        spiking_only = sorted(set(options) - {"bias", "hidden_sizes", "precision"})
        if spiking_only:
            raise ValueError(
                f"option(s) {spiking_only} apply to the spiking model only "
                "(dqn takes bias and precision)"
            )
        if is_image:
            options.pop("hidden_sizes", None)
            return DQN(obs_shape, num_actions, **options)
        return MLP(obs_shape, num_actions, **options)
    if is_image:
        options.pop("hidden_sizes", None)
        return DSQN(obs_shape, num_actions, **options)
    return SpikingMLP(obs_shape, num_actions, **options)
