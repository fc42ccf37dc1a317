"""``dsqn report RUN [RUN ...]``: PNG plots of runs from what they recorded, for users without
Grafana or TensorBoard.

One run (``write_report``) reads the run directory's ``metrics.jsonl`` (one report dict per
training iteration, as the driver writes it) and ``evaluations.jsonl`` and writes:

* ``returns.png``: training return and the evaluations (mean ± std);
* ``firing_rates.png``: each LIF layer's firing rate;
* ``throughput.png``: env steps/s and learner updates/s;
* ``training.png``: the training curves in one figure: return, TD loss, Q (mean and max), ε,
  energy per env step (one inference per action) and firing rates;
* ``spike_raster.png`` (``raster=True``): the spikes of every LIF layer over the T simulation
  steps for one real observation of the run's env, from the run's latest checkpoint.

Several runs (``write_reports``): each run's plots in ``<out>/<run name>/`` and
``overlay.png``, the runs' curves on the same axes.

Every plotted value is a record's (or, for energy, ``snn.energy`` of a record's firing rates):
the ``draw_*`` functions return the matplotlib Figure, so tests read the lines back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from dsqn_rllib.errors import ConfigError
from dsqn_rllib.snn.energy import energy_report
from dsqn_rllib.snn.networks import QNetwork, SpikingQNetwork, build_q_network
from dsqn_rllib.snn.neurons import lif_multistep
from dsqn_rllib.snn.readouts import Readout

Records = list[dict[str, Any]]


def read_jsonl(path: Path) -> Records:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _finite(values: Sequence[Any]) -> list[float]:
    """Floats for matplotlib; a missing or non-finite value becomes NaN (a gap in the line)."""
    out = []
    for v in values:
        try:
            number = float(v)
        except (TypeError, ValueError):
            number = math.nan
        out.append(number if math.isfinite(number) else math.nan)
    return out


@dataclass(frozen=True)
class RunRecords:
    """What one run recorded: its iterations and its evaluations (superseded ones left out)."""

    path: Path
    name: str
    metrics: Records
    evaluations: Records

    @property
    def steps(self) -> list[int]:
        return [int(m["env_steps"]) for m in self.metrics]

    def series(self, key: str) -> list[float]:
        return _finite([m.get(key) for m in self.metrics])

    @property
    def layers(self) -> list[str]:
        return sorted({k for m in self.metrics for k in m.get("firing_rates") or {}})

    def firing_rate(self, layer: str) -> list[float]:
        return _finite([(m.get("firing_rates") or {}).get(layer) for m in self.metrics])


def read_run(run_dir: str | Path) -> RunRecords:
    """The records of a ``dsqn train`` run directory, or of a ``dsqn sweep`` trial's folder
    (Tune's result.json: each result's ``dsqn`` report, its paper-protocol evaluations); a
    one-line ``ConfigError`` without any."""
    run = Path(run_dir).expanduser()
    metrics = read_jsonl(run / "metrics.jsonl")
    if not metrics and (run / "result.json").is_file():
        return _read_trial(run)
    if not metrics:
        raise ConfigError(
            f"no metrics.jsonl with data in {str(run)!r}: is it a dsqn run directory?"
        )
    evaluations = [e for e in read_jsonl(run / "evaluations.jsonl") if not e.get("superseded")]
    name = str(metrics[-1].get("run_id", run.name))
    return RunRecords(run, name, metrics, sorted(evaluations, key=lambda e: e["env_steps"]))


def _read_trial(trial: Path) -> RunRecords:
    """A Tune trial's records. After a restore Tune appends the restored attempt's results:
    a report at env steps already passed replaces the earlier one from there on."""
    metrics: Records = []
    evaluations: dict[int, dict[str, Any]] = {}
    for result in read_jsonl(trial / "result.json"):
        report = result.get("dsqn")
        if not report:
            continue
        while metrics and metrics[-1]["env_steps"] >= report["env_steps"]:
            metrics.pop()  # the lost attempt's iterations past the checkpoint
        metrics.append(report)
        runners = (result.get("evaluation") or {}).get("env_runners") or {}
        if "env_steps_at_evaluation" in runners:
            steps = int(runners["env_steps_at_evaluation"])
            for later in [s for s in evaluations if s > steps]:
                del evaluations[later]
            evaluations[steps] = {
                "env_steps": steps,
                "mean": runners["episode_return_mean"],
                "std": runners.get("episode_return_std"),
                "max": runners.get("episode_return_max"),
            }
    if not metrics:
        raise ConfigError(f"no training results in {str(trial / 'result.json')!r}")
    return RunRecords(trial, trial.name, metrics, [evaluations[s] for s in sorted(evaluations)])


def energy_series(run: RunRecords, net: QNetwork | None) -> list[float]:
    """Energy per inference (pJ) of each iteration: the record's own when it has one (Tune
    trials' ``RunObserver``), else ``snn.energy`` of the record's firing rates on ``net``
    (a DSQN's energy needs measured rates; the DQN twin's is constant); NaN without either."""
    out = []
    for m in run.metrics:
        value = m.get("energy_pj_per_inference")
        if value is None and net is not None:
            rates = m.get("firing_rates") or {}
            if not net.is_spiking:
                value = energy_report(net).energy_pj
            elif rates and all(s.name in rates for s in net.layer_shapes[:-1]):
                value = energy_report(net, rates).energy_pj
        out.append(value)
    return _finite(out)


def _layout_network(run_dir: Path) -> QNetwork | None:
    """The run's network shape from its latest checkpoint (no weights: energy needs only the
    layer sizes); None for a run without one."""
    from dsqn_rllib.ops.checkpoints import read_checkpoint

    try:
        _, cfg, progress = read_checkpoint(run_dir)
    except ConfigError:
        return None
    return build_q_network(
        cfg.model, tuple(progress["obs_shape"]), int(progress["num_actions"]), **cfg.model_options()
    )


# --- one run -------------------------------------------------------------------------------------


def _plot_returns(ax: Any, run: RunRecords) -> None:
    """Training return (last 100 episodes) with the evaluations (mean ± std) on ``ax``."""
    ax.plot(run.steps, run.series("episode_return_mean"), label="training (last 100 episodes)")
    if run.evaluations:
        ax.errorbar(
            [e["env_steps"] for e in run.evaluations],
            [e["mean"] for e in run.evaluations],
            yerr=[e.get("std", 0.0) for e in run.evaluations],
            marker="o",
            capsize=3,
            label="evaluation (mean ± std)",
        )


def draw_training_curves(run: RunRecords, net: QNetwork | None = None) -> Figure:
    """Return (training, and evaluations mean ± std), TD loss, Q, ε, energy per env step and
    firing rates against env steps, one panel each."""
    steps = run.steps
    fig, axes = plt.subplots(2, 3, figsize=(16, 8))
    ret, loss, q, eps, energy, rates = axes.flat

    _plot_returns(ret, run)
    ret.set(ylabel="episode return", title="return")
    ret.legend(fontsize="small")

    loss.plot(steps, run.series("td_loss"))
    loss.set(ylabel="TD loss (MSE)", title="TD loss")
    losses = [v for v in run.series("td_loss") if v > 0]
    if losses and max(losses) > 10 * min(losses):
        loss.set_yscale("log")  # falls over orders of magnitude once learning starts

    q.plot(steps, run.series("q_mean"), label="mean Q")
    q.plot(steps, run.series("q_max"), label="max Q")
    q.set(ylabel="Q of the sampled batch", title="Q values")
    q.legend(fontsize="small")

    eps.plot(steps, run.series("epsilon"))
    eps.set(ylabel="ε", title="exploration ε")

    energy.plot(steps, energy_series(run, net))
    energy.set(ylabel="pJ per env step (45 nm)", title="energy per inference")

    for layer in run.layers:
        rates.plot(steps, run.firing_rate(layer), label=layer)
    rates.set(ylabel="spikes per neuron per step", title="firing rates")
    if run.layers:
        rates.legend(fontsize="small")
    else:
        rates.text(0.5, 0.5, "no spiking layers (DQN twin)", ha="center", transform=rates.transAxes)
    for ax in axes.flat:
        ax.set_xlabel("env steps")
    fig.suptitle(f"{run.name}: training curves")
    fig.tight_layout()
    return fig


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    raster: bool = False,
    raster_neurons: int = 64,
    raster_seed: int = 0,
) -> list[Path]:
    """Write the run's PNG plots into ``out_dir`` (default: the run directory); return them.
    ``raster``: also ``spike_raster.png`` (see ``write_spike_raster``)."""
    run = read_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path
    out.mkdir(parents=True, exist_ok=True)
    steps = run.steps
    written = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    _plot_returns(ax, run)
    ax.set(xlabel="env steps", ylabel="episode return", title=f"{run.name}: return")
    ax.legend()
    written.append(_save(fig, out / "returns.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for layer in run.layers:
        ax.plot(steps, run.firing_rate(layer), label=layer)
    ax.set(
        xlabel="env steps", ylabel="spikes per neuron per step", title=f"{run.name}: firing rates"
    )
    if run.layers:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no spiking layers (DQN twin)", ha="center", transform=ax.transAxes)
    written.append(_save(fig, out / "firing_rates.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, run.series("env_steps_per_s"), label="env steps/s")
    ax.set(xlabel="env steps", ylabel="env steps/s", title=f"{run.name}: throughput")
    twin = ax.twinx()
    twin.plot(steps, run.series("updates_per_s"), color="tab:red", label="updates/s")
    twin.set_ylabel("learner updates/s")
    fig.legend(loc="upper right")
    written.append(_save(fig, out / "throughput.png"))

    written.append(
        _save(draw_training_curves(run, _layout_network(run.path)), out / "training.png")
    )
    if raster:
        written.append(
            write_spike_raster(
                run.path,
                out / "spike_raster.png",
                neurons_per_layer=raster_neurons,
                seed=raster_seed,
            )
        )
    return written


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- several runs --------------------------------------------------------------------------------


def draw_overlay(runs: Sequence[RunRecords]) -> Figure:
    """The runs' curves on shared axes: training return, evaluation return, TD loss and the
    mean firing rate over layers (unweighted), one colour per run."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    train, evaluation, loss, rates = axes.flat
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        train.plot(run.steps, run.series("episode_return_mean"), color=color, label=run.name)
        if run.evaluations:
            evaluation.plot(
                [e["env_steps"] for e in run.evaluations],
                [e["mean"] for e in run.evaluations],
                color=color,
                marker="o",
                label=run.name,
            )
        loss.plot(run.steps, run.series("td_loss"), color=color, label=run.name)
        if run.layers:
            per_layer = np.array([run.firing_rate(layer) for layer in run.layers])
            rates.plot(run.steps, per_layer.mean(axis=0), color=color, label=run.name)
    train.set(title="training return (last 100 episodes)", ylabel="episode return")
    evaluation.set(title="evaluation return (paper protocol)", ylabel="mean return")
    loss.set(title="TD loss", ylabel="TD loss (MSE)")
    rates.set(title="firing rate, mean over LIF layers", ylabel="spikes per neuron per step")
    for ax in axes.flat:
        ax.set_xlabel("env steps")
        if ax.lines:
            ax.legend(fontsize="small")
    fig.suptitle(f"{len(runs)} runs")
    fig.tight_layout()
    return fig


def write_overlay(run_dirs: Sequence[str | Path], path: str | Path) -> Path:
    """``draw_overlay`` of the runs saved as a PNG at ``path``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _save(draw_overlay([read_run(r) for r in run_dirs]), out)


def write_reports(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    raster: bool = False,
    raster_neurons: int = 64,
    raster_seed: int = 0,
) -> list[Path]:
    """``dsqn report``: one run as ``write_report``; several runs need ``out_dir``: each run's
    plots go to ``<out_dir>/<run dir name>/``, their overlay to ``<out_dir>/overlay.png``.
    With ``raster``, runs of the DQN twin (no spikes) get no raster among several runs."""
    if not run_dirs:
        raise ConfigError("give at least one run directory")
    options = {"raster_neurons": raster_neurons, "raster_seed": raster_seed}
    if len(run_dirs) == 1:
        return write_report(run_dirs[0], out_dir, raster=raster, **options)
    if out_dir is None:
        raise ConfigError("several runs: give --out DIR for their plots and overlay.png")
    out = Path(out_dir)
    names = [Path(r).expanduser().resolve().name for r in run_dirs]
    if len(set(names)) != len(names):
        raise ConfigError(f"run directories must have distinct names, got {names}")
    runs = [read_run(r) for r in run_dirs]  # every one checked before anything is written
    written = []
    for run, name in zip(runs, names, strict=True):
        spiking = raster and _is_spiking_run(run.path)
        written += write_report(run.path, out / name, raster=spiking, **options)
    written.append(_save(draw_overlay(runs), _mkdir(out) / "overlay.png"))
    return written


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _is_spiking_run(run_dir: Path) -> bool:
    net = _layout_network(run_dir)
    return net is not None and net.is_spiking


# --- spike raster --------------------------------------------------------------------------------


def layer_spikes(net: SpikingQNetwork, obs: Tensor) -> dict[str, Tensor]:
    """The spikes ``(T, neurons)`` (0/1) of every LIF layer of ``net`` for one observation
    ``obs`` (shaped ``net.obs_shape``), keyed by the layer that drives it (as firing rates are).

    Read with forward hooks, the network untouched: the spikes of a LIF layer are the input
    of the next layer (one call on all T steps folded, or T calls step by step). Under the
    firing-rate readout the head sees rates, not spikes: the last LIF layer's spikes are then
    recomputed from its input currents with the network's own ``lif_multistep``. Checked
    against the firing rates the network reports itself.
    """
    if not net.is_spiking:
        raise ValueError("the DQN twin has no spikes: a spike raster needs a spiking network")
    names = list(net.layers.keys())
    lif_layers = names[:-1]
    inputs: dict[str, list[Tensor]] = {name: [] for name in names[1:]}
    currents: list[Tensor] = []
    hooks = [
        net.layers[name].register_forward_pre_hook(
            lambda _m, args, name=name: inputs[name].append(args[0].detach())
        )
        for name in names[1:]
    ]
    hooks.append(
        net.layers[lif_layers[-1]].register_forward_hook(
            lambda _m, _args, output: currents.append(output.detach())
        )
    )
    try:
        with torch.no_grad():
            _, stats = net(obs.unsqueeze(0), return_stats=True)
    finally:
        for hook in hooks:
            hook.remove()
    T = net.T
    spikes = {}
    for layer, reader in zip(lif_layers, names[1:], strict=True):
        seen = torch.cat(inputs[reader]).flatten(1)  # (T * 1, ...) folded, T x (1, ...) stepped
        if layer == lif_layers[-1] and net.readout is Readout.FIRING_RATE:
            seen = lif_multistep(torch.cat(currents).unsqueeze(1), net.neuron).flatten(1)
        if seen.shape[0] != T:
            raise RuntimeError(f"layer {layer}: read {seen.shape[0]} steps, expected T = {T}")
        spikes[layer] = seen
    for layer, s in spikes.items():  # the hooks read what the network counts
        if not math.isclose(float(s.mean()), float(stats.rates[layer]), abs_tol=1e-6):
            raise RuntimeError(
                f"layer {layer}: hooked spikes rate {float(s.mean()):.6f} != the network's "
                f"{float(stats.rates[layer]):.6f}; has the network's forward changed?"
            )
    return spikes


@dataclass(frozen=True)
class SpikeRaster:
    """A sample of each LIF layer's neurons: their indices and spikes ``(T, k)``."""

    T: int
    neurons: dict[str, np.ndarray]
    """Indices (into the flattened layer) of the sampled neurons, ascending."""
    spikes: dict[str, np.ndarray]
    """``(T, k)`` 0/1 spikes of the sampled neurons."""
    rates: dict[str, float]
    """Each whole layer's firing rate for this observation."""
    sizes: dict[str, int]


def sample_raster(
    spikes: Mapping[str, Tensor], neurons_per_layer: int = 64, seed: int = 0
) -> SpikeRaster:
    """``neurons_per_layer`` neurons of each layer drawn uniformly at random (reproducible
    from ``seed``): an unbiased picture of the layer, silent neurons included."""
    if neurons_per_layer < 1:
        raise ConfigError(f"neurons per layer must be >= 1, got {neurons_per_layer}")
    rng = np.random.default_rng(seed)
    neurons, picked, rates, sizes = {}, {}, {}, {}
    T = 0
    for layer, s in spikes.items():
        array = s.cpu().numpy()
        T, size = array.shape
        idx = np.sort(rng.choice(size, size=min(neurons_per_layer, size), replace=False))
        neurons[layer], picked[layer] = idx, array[:, idx]
        rates[layer], sizes[layer] = float(array.mean()), size
    return SpikeRaster(T, neurons, picked, rates, sizes)


def draw_spike_raster(
    raster: SpikeRaster, obs: np.ndarray | None = None, title: str = ""
) -> Figure:
    """The observation (the newest frame of a stack, or the vector) and one raster per LIF
    layer: a dot where a sampled neuron spikes at step t."""
    panels = len(raster.spikes) + (obs is not None)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 4.8), squeeze=False)
    axes = list(axes.flat)
    if obs is not None:
        ax = axes.pop(0)
        if obs.ndim >= 2:
            frame = obs[-1] if obs.ndim == 3 and obs.shape[0] <= 16 else obs[..., -1]
            ax.imshow(frame, cmap="gray")
            ax.set(title="observation (newest frame)", xticks=[], yticks=[])
        else:
            ax.barh(range(len(obs)), obs)
            ax.set(title="observation", ylabel="feature")
    for ax, (layer, s) in zip(axes, raster.spikes.items(), strict=True):
        t, k = np.nonzero(s)
        ax.scatter(t + 1, k, marker="|", s=40, color="black")
        ax.set(
            xlim=(0.5, raster.T + 0.5),
            ylim=(-0.5, s.shape[1] - 0.5),
            xticks=range(1, raster.T + 1),
            xlabel="simulation step t",
            title=f"{layer}: rate {raster.rates[layer]:.3f}",
        )
        ax.set_ylabel(f"{s.shape[1]} of {raster.sizes[layer]} neurons")
        ax.invert_yaxis()
    fig.suptitle(title or "spike raster")
    fig.tight_layout()
    return fig


def run_observation(cfg: Any, seed: int = 0, steps: int = 50) -> np.ndarray:
    """A real observation of the run's env after ``steps`` steps of uniformly random play
    from a reset with ``seed`` (Atari: the training protocol's frame stack, uint8)."""
    if cfg.is_atari:
        from dsqn_rllib.envs.atari import AtariConfig, random_play_observations

        return random_play_observations(AtariConfig(cfg.game), steps + 1, seed=seed)[-1]
    import gymnasium as gym

    env = gym.make(cfg.env)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.asarray(obs)


def write_spike_raster(
    run_or_checkpoint: str | Path,
    path: str | Path,
    *,
    neurons_per_layer: int = 64,
    seed: int = 0,
    steps: int = 50,
) -> Path:
    """The spike raster of the checkpointed network (a run directory's latest checkpoint)
    for one observation of its env (``run_observation``), saved as a PNG at ``path``."""
    from dsqn_rllib.ops.checkpoints import load_network

    net, cfg, progress = load_network(run_or_checkpoint)
    if not isinstance(net, SpikingQNetwork):
        raise ConfigError(
            f"{str(run_or_checkpoint)!r} is a DQN twin: no spikes to draw (the raster needs a "
            "DSQN run)"
        )
    obs = run_observation(cfg, seed=seed, steps=steps)
    spikes = layer_spikes(net, torch.as_tensor(obs))
    raster = sample_raster(spikes, neurons_per_layer, seed)
    env = cfg.game if cfg.is_atari else cfg.env
    title = (
        f"{cfg.run_id}: {env}, one observation at {int(progress.get('env_steps', 0)):,} steps, "
        f"T={net.T}, {net.readout.value}"
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _save(draw_spike_raster(raster, obs, title), out)
