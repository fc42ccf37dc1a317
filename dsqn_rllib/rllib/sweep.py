"""A sweep: a grid of ``DSQNConfig`` trials on Ray Tune (games x networks x seeds).

    plan = SweepPlan(name="s1", envs=["pong", "breakout"], models=["dsqn", "dqn"],
                     readouts=["max-mem"], Ts=[8], seeds=[0, 1, 2], total_steps=200_000)
    results = run_sweep(plan, base=DSQNConfig(), run_root="runs")

Every trial is recorded in the run registry as ``<sweep>-<trial id>`` with its grid point
(``RunObserver``), evaluated with the paper's protocol, and checkpointed at its end; trials run
concurrently as Ray's resources allow. A sweep whose driver was killed resumes where it stopped
(``run_sweep`` restores Tune's experiment at ``<run_root>/<name>`` when it exists). The grid is
validated variant by variant before Ray starts: a bad value is one line.

Networks: the DQN twin has no readout or T, so the grid is the DSQN variants (readout x T)
plus one DQN variant, not their product with every readout.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsqn_rllib.envs.atari import PAPER_GAMES, resolve_env
from dsqn_rllib.errors import ConfigError, is_int
from dsqn_rllib.ops.stopping import children_spared_sigterm
from dsqn_rllib.rllib.config import DSQNConfig, network_options
from dsqn_rllib.snn.networks import ModelKind, spiking_config

# A run's pace on this project's 2-core CPU machine once learning starts (README, Benchmarks):
# the DSQN T=8 (fp32) measured end to end at 1.76 updates/s of batch 128 every 4 env steps; its
# cost scales with T. The DQN twin's update is 5.21x cheaper (bench_core, batch 128): its pace is
# that multiple, an estimate. No GPU has been lent to measure a GPU learner.
CPU_DSQN_T8_ENV_STEPS_PER_S = 1.76 * 4
CPU_DQN_OVER_DSQN_T8 = 5.21


@dataclass
class SweepPlan:
    """The grid and the budget of one sweep."""

    name: str
    envs: list[str] = field(default_factory=lambda: ["pong"])
    models: list[str] = field(default_factory=lambda: ["dsqn", "dqn"])
    readouts: list[str] = field(default_factory=lambda: ["max-mem"])
    Ts: list[int] = field(default_factory=lambda: [8])
    seeds: list[int] = field(default_factory=lambda: [0])
    total_steps: int = 20_000_000
    """Env steps per trial (Tune's stopper on num_env_steps_sampled_lifetime)."""
    evaluation_interval: int = 50
    """Training iterations between paper-protocol evaluations (an iteration is ~2 s)."""

    def networks(self) -> list[dict[str, Any]]:
        """The network variants: readout x T for the DSQN, one for the DQN twin (a bad model,
        readout or T is a one-line ``ConfigError``)."""
        variants = []
        try:
            for model in self.models:
                if ModelKind(model) is ModelKind.DSQN:
                    for readout in self.readouts:
                        for T in self.Ts:
                            spiking = spiking_config(readout=readout, T=T)
                            variants.append(network_options(ModelKind.DSQN, spiking))
                else:
                    variants.append(network_options(ModelKind.DQN))
        except ValueError as err:
            message = str(err)
            if "ModelKind" in message:
                message = f"model must be dsqn or dqn, got {self.models!r}"
            raise ConfigError(message) from None
        return variants

    @property
    def num_trials(self) -> int:
        return len(self.envs) * len(self.networks()) * len(self.seeds)

    def cpu_days(self) -> float:
        """Days of a 2-core CPU for the whole grid, trial after trial, at the paces above."""
        seconds = 0.0
        for network in self.networks():
            pace = CPU_DSQN_T8_ENV_STEPS_PER_S
            if network["model"] == "dqn":
                pace *= CPU_DQN_OVER_DSQN_T8
            else:
                pace *= 8 / network["T"]
            seconds += len(self.envs) * len(self.seeds) * self.total_steps / pace
        return seconds / 86_400

    def describe(self) -> str:
        """The run plan and its cost on a 2-core CPU at the measured pace (no GPU measured)."""
        steps = self.num_trials * self.total_steps
        nets = ", ".join(
            n["model"] if n["model"] == "dqn" else f"dsqn {n['readout']} T={n['T']}"
            for n in self.networks()
        )
        return (
            f"sweep {self.name}: {self.num_trials} trials = {len(self.envs)} env(s) "
            f"[{', '.join(self.envs)}] x {len(self.networks())} network(s) [{nets}] x "
            f"{len(self.seeds)} seed(s); {self.total_steps:,} env steps each, {steps:,} in all; "
            f"~{self.cpu_days():,.0f} days on a 2-core CPU (DSQN T=8 at "
            f"{CPU_DSQN_T8_ENV_STEPS_PER_S:.1f} env steps/s measured, the DQN twin "
            f"{CPU_DQN_OVER_DSQN_T8:g}x that, from its measured update time); on a GPU learner: "
            "not measured yet (no GPU has been lent to this project)"
        )


PRESETS: dict[str, SweepPlan] = {
    # The paper's Table: 17 games x DSQN (max-mem, T 8) and its DQN twin, 20M steps, one seed.
    "paper-17": SweepPlan(
        name="paper-17", envs=list(PAPER_GAMES), models=["dsqn", "dqn"], seeds=[0]
    ),
    # The paper's readout comparison, plus Liu et al.'s firing-rate readout, on Pong.
    "readout-ablation": SweepPlan(
        name="readout-ablation",
        envs=["pong"],
        models=["dsqn"],
        readouts=["last-mem", "max-mem", "mean-mem", "firing-rate"],
        seeds=[0, 1, 2],
    ),
}


def sweep_config(plan: SweepPlan, base: DSQNConfig, run_root: str | Path) -> DSQNConfig:
    """``base`` with the grid in it (Tune's ``grid_search``), every variant validated first."""
    from ray import tune

    networks = plan.networks()
    for env in plan.envs:
        resolve_env(env)
        for network in networks:
            probe = copy.deepcopy(base).environment(env).rl_module(model_config=network)
            probe.validate_dsqn()
    if not plan.seeds or any(not is_int(s) or s < 0 for s in plan.seeds):
        raise ConfigError(f"seeds must be integers >= 0, got {plan.seeds!r}")
    config = copy.deepcopy(base)
    config.env = tune.grid_search(list(plan.envs))
    config._model_config = tune.grid_search(networks)
    config.seed = tune.grid_search([int(s) for s in plan.seeds])
    config.evaluation(evaluation_interval=plan.evaluation_interval)
    config.observability(registry=True, run_root=str(run_root), sweep=plan.name)
    return config


def run_sweep(plan: SweepPlan, base: DSQNConfig, run_root: str | Path, *, verbose: int = 1) -> Any:
    """Run (or resume) the sweep; returns Tune's ``ResultGrid``."""
    import ray
    from ray import tune

    config = sweep_config(plan, base, run_root)
    storage = Path(run_root).expanduser().resolve()
    experiment = storage / plan.name
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):  # `ray submit` / `ray job submit` on a cluster
            ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        else:  # a fresh local Ray (never one a `ray start` left on this machine)
            with children_spared_sigterm():  # a process-group SIGTERM is Tune's to handle
                ray.init(address="local", include_dashboard=False, log_to_driver=False)
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(
            str(experiment), trainable=config.algo_class, resume_errored=True, param_space=config
        )
    else:
        tuner = tune.Tuner(
            config.algo_class,
            param_space=config,
            run_config=tune.RunConfig(
                name=plan.name,
                storage_path=str(storage),
                stop={"num_env_steps_sampled_lifetime": plan.total_steps},
                checkpoint_config=tune.CheckpointConfig(
                    checkpoint_at_end=True, checkpoint_frequency=max(1, plan.evaluation_interval)
                ),
                verbose=verbose,
            ),
        )
    return tuner.fit()
