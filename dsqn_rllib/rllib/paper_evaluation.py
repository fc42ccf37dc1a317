"""The paper's evaluation protocol as our Algorithms' own RLlib evaluation, overlapped with
training (``PaperEvaluation``, mixed into ``PipelinedDQN`` and the old stack's ``OldStackDQN``).

The protocol (``dsqn_rllib.evaluation.protocol``: whole games at ε 0.05, no-op starts, 108k-frame
cap) runs on a copy of the learner's weights. The schedule comes from the config's evaluation
settings (``EvaluationSettings``; RLlib's names on a ``DSQNConfig``):

* ``evaluation_interval_env_steps`` (ours: the paper evaluates every 250k env steps) or RLlib's
  ``evaluation_interval`` (iterations, i.e. ``min_time_s_per_iteration`` of wall time each);
* ``evaluation_duration`` episodes at ε = ``evaluation_config["explore_epsilon"]``;
* ``evaluation_parallel_to_training``: False: the iteration that is due evaluates in the
  algorithm's process and reports it in its own result. True: a Ray task (one CPU, inside the
  trial's placement group under Tune: ``extra_bundle``) evaluates a frozen copy of the weights
  while training goes on, and the iteration in which it ends reports it. One runs at a time; one
  due meanwhile starts when it ends (none is skipped), said once in ``result["dsqn"]["note"]``.

RLlib's own scheduling would block an iteration on the evaluation (or run it in a thread beside
training in the same process): for the paper's protocol ``step`` schedules it instead. Results
are RLlib's: ``result["evaluation"]["env_runners"]`` with the standard episode keys plus
``episode_returns``, ``episode_return_std``, ``eval_seed``, ``eval_epsilon`` and
``env_steps_at_evaluation`` (the step of the weights evaluated), and ``on_evaluate_end`` fires.
``algo.last_evaluation`` keeps the latest ``Evaluation`` with its weights (a driver keeps the
best checkpoint from it).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from ray.rllib.callbacks.utils import make_callback
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    EPISODE_LEN_MEAN,
    EPISODE_RETURN_MAX,
    EPISODE_RETURN_MEAN,
    EPISODE_RETURN_MIN,
    EVALUATION_RESULTS,
    NUM_EPISODES,
)

from dsqn_rllib.evaluation.protocol import EvalConfig, EvalResult, evaluate
from dsqn_rllib.snn.networks import ModelKind, QNetwork, build_q_network

# The evaluation's seed: apart from every training seed (the paper's protocol, seeded).
EVAL_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class QNetworkSpec:
    """What builds a copy of the algorithm's Q-network (in another process too)."""

    model: ModelKind
    obs_shape: tuple[int, ...]
    num_actions: int
    options: dict[str, Any]
    """``build_q_network`` keyword options."""

    def build(self, weights: dict[str, torch.Tensor] | None = None) -> QNetwork:
        net = build_q_network(self.model, self.obs_shape, self.num_actions, **self.options)
        if weights is not None:
            net.load_state_dict(weights)
        return net.eval()


@dataclass(frozen=True)
class EvaluationSettings:
    """When and how the paper's protocol evaluates (see the module doc)."""

    env: str
    """The game's ROM id or the Gymnasium id evaluated."""
    protocol: EvalConfig
    interval_env_steps: int | None = None
    """Evaluate each time this many env steps have passed (None or 0: by iterations)."""
    interval_iterations: int | None = None
    """RLlib's ``evaluation_interval``: every this many iterations (None or 0: never)."""
    in_parallel: bool = False
    """A Ray task overlapped with training (True) or in the iteration that is due (False)."""


@dataclass
class Evaluation:
    """One finished evaluation: the step of its weights, the protocol, the returns, the weights."""

    env_steps: int
    protocol: EvalConfig
    result: EvalResult
    weights: dict[str, torch.Tensor] = field(repr=False)

    def metrics(self) -> dict[str, Any]:
        """RLlib's evaluation results (``result["evaluation"]``)."""
        result = self.result
        return {
            ENV_RUNNER_RESULTS: {
                EPISODE_RETURN_MEAN: result.mean,
                EPISODE_RETURN_MAX: result.max,
                EPISODE_RETURN_MIN: result.min,
                EPISODE_LEN_MEAN: float(sum(result.lengths)) / max(1, result.num_episodes),
                NUM_EPISODES: result.num_episodes,
                "episode_return_std": result.std,
                "episode_returns": list(result.returns),
                "eval_epsilon": self.protocol.epsilon,
                "eval_seed": self.protocol.seed,
                "env_steps_at_evaluation": self.env_steps,
            }
        }


@ray.remote(num_cpus=1)
def _evaluate_remote(
    spec: QNetworkSpec, weights: dict[str, torch.Tensor], env: str, protocol: EvalConfig
) -> EvalResult:
    torch.set_num_threads(1)
    with torch.inference_mode():
        return evaluate(spec.build(weights), env, protocol)


def paper_protocol_evaluation(algo: Any, eval_env_runner_group: Any) -> tuple:
    """RLlib's ``custom_evaluation_function`` (the marker that selects the paper's protocol):
    evaluate the current weights now, in this process. Returns ``(results, env_steps,
    agent_steps)`` as RLlib expects."""
    evaluation = algo.evaluate_now()
    steps = int(sum(evaluation.result.lengths))
    return evaluation.metrics(), steps, steps


class PaperEvaluation:
    """Mixin for an RLlib ``Algorithm`` (put it first among the bases). The algorithm provides
    ``q_network_spec``, ``online_weights``, ``sampled_env_steps`` and ``evaluation_settings``,
    and calls ``setup_paper_evaluation`` at the end of its ``setup`` and
    ``paper_evaluation_step`` from its ``step``."""

    config: Any
    callbacks: Any
    metrics: Any
    iteration: int
    _paper: EvaluationSettings | None = None  # set by setup_paper_evaluation

    # --- what the algorithm provides ------------------------------------------------------

    def q_network_spec(self) -> QNetworkSpec:
        raise NotImplementedError

    def online_weights(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def sampled_env_steps(self) -> int:
        raise NotImplementedError

    def evaluation_settings(self) -> EvaluationSettings | None:
        """None when the paper's protocol is not the configured evaluation."""
        raise NotImplementedError

    # --- RLlib hooks ----------------------------------------------------------------------

    @classmethod
    def _should_create_evaluation_env_runners(cls, eval_config: Any) -> bool:
        # The protocol runs its own envs: no evaluation EnvRunnerGroup (a second set of envs).
        if eval_config.custom_evaluation_function is paper_protocol_evaluation:
            return False
        return super()._should_create_evaluation_env_runners(eval_config)  # type: ignore[misc]

    @classmethod
    def extra_bundle(cls, config: Any) -> dict[str, float] | None:
        """The CPU an overlapped evaluation task runs on (a Tune trial reserves it)."""
        if (
            config.custom_evaluation_function is paper_protocol_evaluation
            and config.evaluation_parallel_to_training
        ):
            return {"CPU": 1.0}
        return None

    @classmethod
    def default_resource_request(cls, config: Any) -> Any:
        request = super().default_resource_request(config)  # type: ignore[misc]
        if isinstance(config, dict):  # (Tune hands the trial's config over as a dict)
            config = cls.get_default_config().update_from_dict(config)  # type: ignore[attr-defined]
        bundle = cls.extra_bundle(config)
        if bundle is None:
            return request
        from ray.tune.execution.placement_groups import PlacementGroupFactory

        return PlacementGroupFactory([*request.bundles, bundle], strategy=request.strategy)

    def _run_one_evaluation(self, parallel_train_future: Any = None) -> dict:
        if self._paper is None:
            return super()._run_one_evaluation(parallel_train_future)  # type: ignore[misc]
        return {}  # scheduled by paper_evaluation_step

    def _run_one_training_iteration_and_evaluation_in_parallel(self) -> tuple:
        if self._paper is None:
            return super()._run_one_training_iteration_and_evaluation_in_parallel()  # type: ignore[misc]
        if self.config.enable_env_runner_and_connector_v2:
            train_results, ctx = self._run_one_training_iteration()  # type: ignore[attr-defined]
        else:
            train_results, ctx = self._run_one_training_iteration_old_api_stack()  # type: ignore[attr-defined]
        return train_results, {}, ctx

    def evaluate(self, parallel_train_future: Any = None) -> dict:
        """RLlib's ``evaluate()``: with the paper's protocol, the current weights now (results
        as they are: RLlib's new-stack version would read them back from its metrics logger,
        where a custom function's never arrive)."""
        if self._paper is None:
            return super().evaluate(parallel_train_future)  # type: ignore[misc]
        return self._report_evaluation(self.evaluate_now())

    # --- the schedule ---------------------------------------------------------------------

    def setup_paper_evaluation(self) -> None:
        self._paper = self.evaluation_settings()
        self.last_evaluation: Evaluation | None = None
        self._pending: tuple[ray.ObjectRef, int, dict[str, torch.Tensor]] | None = None
        self._wait_said = False
        self._next_due_step = self._next_multiple(self.sampled_env_steps())

    def _next_multiple(self, env_steps: int) -> int:
        interval = self._paper.interval_env_steps if self._paper else None
        if not interval:
            return sys.maxsize
        return (env_steps // interval + 1) * interval

    def restart_evaluation_schedule(self) -> None:
        """After a restore: the next evaluation is due at the next multiple of the interval."""
        if self._paper is not None:
            self._next_due_step = self._next_multiple(self.sampled_env_steps())

    def _due(self) -> bool:
        assert self._paper is not None
        if self._paper.interval_env_steps:
            return self.sampled_env_steps() >= self._next_due_step
        every = self._paper.interval_iterations
        return bool(every) and (self.iteration + 1) % every == 0

    def paper_evaluation_step(self, result: dict) -> None:
        """After a training iteration: collect a finished evaluation, start a due one."""
        if self._paper is None:
            return
        finished = self.poll_evaluation(timeout_s=0.0)
        if self._due():
            if self._pending is None:
                self._wait_said = False
                self._next_due_step = self._next_multiple(self.sampled_env_steps())
                if self._paper.in_parallel:
                    self.start_evaluation()
                else:
                    finished = self.evaluate_now()
            elif not self._wait_said:
                self._wait_said = True
                due_at = (
                    self._next_due_step
                    if self._paper.interval_env_steps
                    else self.sampled_env_steps()
                )
                result.setdefault("dsqn", {})["note"] = (
                    f"evaluation due at {due_at:,} steps waits for the one of "
                    f"{self._pending[1]:,} steps (an evaluation takes longer than the "
                    "evaluation interval; raise the interval or lower the episodes): it starts "
                    "when that one ends"
                )
        if finished is not None:
            result[EVALUATION_RESULTS] = self._report_evaluation(finished)

    def start_evaluation(self) -> bool:
        """Start an overlapped evaluation of the current weights; False while one runs."""
        if self._pending is not None or self._paper is None:
            return False
        weights = self.online_weights()
        # At the learner's priority: Ray starts its workers at niceness 15, and a learner in the
        # driver (niceness 0) that keeps every core busy (2 cores, 0 runners) otherwise starves
        # the task ~30x (measured: 93 s for 2.5 s of work). Ray's job driver gets 0 the same way.
        priority = {"env_vars": {"RAY_worker_niceness": str(os.nice(0))}}
        ref = _evaluate_remote.options(runtime_env=priority).remote(
            self.q_network_spec(), weights, self._paper.env, self._paper.protocol
        )
        self._pending = (ref, self.sampled_env_steps(), weights)
        return True

    @property
    def evaluation_running(self) -> bool:
        return self._pending is not None

    def poll_evaluation(self, timeout_s: float | None) -> Evaluation | None:
        """The running evaluation once it has finished (waiting at most ``timeout_s``; None:
        until it does); None while it runs or when none does. A caller that takes it this
        way (not through ``step``) reports it itself."""
        if self._pending is None or self._paper is None:
            return None
        ref, steps, weights = self._pending
        ready, _ = ray.wait([ref], timeout=timeout_s)
        if not ready:
            return None
        self._pending = None
        evaluation = Evaluation(steps, self._paper.protocol, ray.get(ref), weights)
        self.last_evaluation = evaluation
        return evaluation

    def evaluate_now(self) -> Evaluation:
        """The current weights, evaluated in this process (blocking)."""
        settings = self._paper
        if settings is None:
            raise RuntimeError(
                f"{type(self).__name__} has no paper-protocol evaluation configured "
                "(custom_evaluation_function=paper_protocol_evaluation)"
            )
        weights = self.online_weights()
        with torch.inference_mode():
            result = evaluate(self.q_network_spec().build(weights), settings.env, settings.protocol)
        evaluation = Evaluation(self.sampled_env_steps(), settings.protocol, result, weights)
        self.last_evaluation = evaluation
        return evaluation

    def _report_evaluation(self, evaluation: Evaluation) -> dict:
        metrics = evaluation.metrics()
        make_callback(
            "on_evaluate_end",
            callbacks_objects=self.callbacks,
            callbacks_functions=self.config.callbacks_on_evaluate_end,
            kwargs={
                "algorithm": self,
                "metrics_logger": self.metrics,
                "evaluation_metrics": metrics,
            },
        )
        return metrics
