"""``FusedAdamDQNLearner``: RLlib's DQN torch learner with the configured Adam, a cheap
non-finite-gradient guard, and a lean path for the batches ``PipelinedDQN`` sends.

* RLlib 2.60's ``TorchLearner`` builds ``torch.optim.Adam(params)`` for every module: the
  ``adam_epsilon`` of ``DQNConfig`` is read only by the old API stack, so the new stack trained
  with ε = 1e-8 whatever was configured. This learner builds Adam with ``adam_epsilon``
  (``TrainConfig.adam_eps``, 1e-8 by default as in the authors' code) and the fused kernel
  (``dsqn_rllib.snn.optim.make_adam``); the learning rate stays under RLlib's scheduler.
* ``TorchLearner.apply_gradients`` checks each gradient tensor with ``isfinite().all()`` twice,
  a host sync each (a third of a Nature-CNN update on 2 CPU cores), then zeroes the NaN entries
  and steps anyway. Here one fused check decides and an update with a non-finite gradient is
  skipped whole (``dsqn_rllib.snn.optim.step_if_finite``), counted under ``NONFINITE_SKIPS``.
* ``Learner.update`` wraps each minibatch in general-purpose machinery (``TrainingData``, a
  cyclic minibatch iterator converting nested structures, Ray-metrics counters, five
  steps-trained metrics); on 2 CPU cores that was ~1.2 ms of a ~28 ms Nature-CNN update. For
  the one shape ``PipelinedDQN`` sends (one ``MultiAgentBatch`` of numpy columns, one epoch of
  equal consecutive minibatches, as RLlib would cut them) ``update`` moves the batch to the
  device once and runs RLlib's own per-minibatch ``_update`` and before/after hooks (lr
  schedule, target-network sync) directly; anything else goes through RLlib's path.
* ``_update`` runs inside ``dsqn_rllib.snn.precision.learner_update()``: with a network's
  ``precision="bf16"`` the whole update (the target network's forward included) computes in
  bf16 while the env runners act in fp32.
* The DQN loss (``compute_loss_for_module``) is RLlib's for expectation Q-learning
  (``num_atoms == 1``, no loss mask): same targets, same n-step discount, same weights and
  loss function, minus the per-update td-error series that only prioritized replay reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.dqn.dqn_learner import (
    QF_LOSS_KEY,
    QF_MAX_KEY,
    QF_MEAN_KEY,
    QF_MIN_KEY,
    QF_NEXT_PREDS,
    QF_PREDS,
    QF_TARGET_NEXT_PREDS,
    TD_ERROR_MEAN_KEY,
)
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.policy.sample_batch import MultiAgentBatch
from torch import nn

from dsqn_rllib.snn.optim import make_adam, step_if_finite
from dsqn_rllib.snn.precision import learner_update
from dsqn_rllib.snn.spike_init import PROBE_FRAMES, SpikeInit, threshold_aware_init_

# Per-module metric: updates skipped because a gradient held an inf or NaN (lifetime sum).
NONFINITE_SKIPS = "nonfinite_grad_skips"


class FusedAdamDQNLearner(DQNTorchLearner):
    def build(self) -> None:
        super().build()
        for module in self.module.values():
            _maybe_threshold_aware_init(module)

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        params = self.get_parameters(self._module[module_id])
        # register_optimizer sets the lr from config.lr (a value or a schedule) at once.
        optimizer = make_adam(params, lr=1e-3, eps=config.adam_epsilon)
        self.register_optimizer(
            module_id=module_id, optimizer=optimizer, params=params, lr_or_lr_schedule=config.lr
        )

    def apply_gradients(self, gradients_dict: dict) -> None:
        if self._grad_scalers is not None or self._lr_scheduler_classes is not None:
            # Mixed precision and torch lr schedulers are RLlib's to handle (we set neither).
            super().apply_gradients(gradients_dict)
            return
        for param_ref, grad in gradients_dict.items():
            self._params[param_ref].grad = grad
        for module_id, optimizer_names in self._module_optimizers.items():
            for optimizer_name in optimizer_names:
                skipped = step_if_finite(self.get_optimizer(module_id, optimizer_name))
                self.metrics.log_value((module_id, NONFINITE_SKIPS), skipped, reduce="lifetime_sum")

    def update(self, training_data: TrainingData | None = None, **kwargs: Any) -> Any:
        """RLlib's ``Learner.update`` for one epoch of consecutive minibatches, without its
        per-call wrapping (see the module docstring); other calls go to RLlib's."""
        batch = _lean_batch(training_data, kwargs)
        if batch is None or set(batch.policy_batches) - set(self.module.keys()):
            return super().update(training_data=training_data, **kwargs)
        self._check_is_built()
        timesteps = kwargs.get("timesteps") or {}
        self.before_gradient_based_update(timesteps=timesteps)
        self._weights_seq_no += 1
        size = len(next(iter(batch.policy_batches.values())))
        minibatch = kwargs.get("minibatch_size") or size
        # One host-to-device copy per column; minibatches are views of it.
        columns = {
            module_id: {
                key: torch.from_numpy(np.asarray(value)).to(self._device, non_blocking=True)
                for key, value in module_batch.items()
            }
            for module_id, module_batch in batch.policy_batches.items()
        }
        loss_per_module: dict = {}
        for start in range(0, size - minibatch + 1, minibatch):
            _, loss_per_module, _ = self._update(
                {
                    module_id: {key: t[start : start + minibatch] for key, t in cols.items()}
                    for module_id, cols in columns.items()
                }
            )
        for module_id, loss in loss_per_module.items():
            self.metrics.log_value((module_id, self.TOTAL_LOSS_KEY), loss, window=1)
        self.after_gradient_based_update(timesteps=timesteps)
        return self.metrics.reduce()

    def _update(self, *args: Any, **kwargs: Any) -> Any:
        # The target network's forward (no_grad) is part of the update: under a network's
        # precision="bf16" it computes in bf16 like the online one; acting stays fp32.
        with learner_update():
            return super()._update(*args, **kwargs)

    def compute_loss_for_module(
        self, *, module_id: str, config: Any, batch: dict, fwd_out: dict
    ) -> torch.Tensor:
        if config.num_atoms > 1 or Columns.LOSS_MASK in batch:
            return super().compute_loss_for_module(
                module_id=module_id, config=config, batch=batch, fwd_out=fwd_out
            )
        q_selected = fwd_out[QF_PREDS].gather(1, batch[Columns.ACTIONS].long()[:, None])[:, 0]
        with torch.no_grad():
            q_target_next = fwd_out[QF_TARGET_NEXT_PREDS]
            if config.double_q:  # the target net's value of the online net's greedy action
                best = fwd_out[QF_NEXT_PREDS].argmax(1, keepdim=True)
                q_next_best = q_target_next.gather(1, best)[:, 0]
            else:
                q_next_best = q_target_next.amax(1)
            not_done = 1.0 - batch[Columns.TERMINATEDS].float()
            discount = config.gamma ** batch["n_step"]
            target = batch[Columns.REWARDS] + discount * (not_done * q_next_best)
        huber = config.td_error_loss_fn == "huber"
        loss_fn = nn.functional.huber_loss if huber else nn.functional.mse_loss
        loss = torch.mean(batch["weights"] * loss_fn(q_selected, target, reduction="none"))
        q = q_selected.detach()
        self.metrics.log_dict(
            {
                QF_LOSS_KEY: loss.detach(),
                QF_MEAN_KEY: q.mean(),
                QF_MAX_KEY: q.max(),
                QF_MIN_KEY: q.min(),
                TD_ERROR_MEAN_KEY: (q - target).abs().mean(),
            },
            key=module_id,
            window=1,
        )
        return loss


def _lean_batch(training_data: TrainingData | None, kwargs: dict) -> MultiAgentBatch | None:
    """The batch, where the call is the one shape the lean ``update`` serves."""
    if training_data is None or kwargs.get("num_epochs", 1) != 1:
        return None
    if kwargs.get("shuffle_batch_per_epoch") or kwargs.get("num_total_minibatches"):
        return None
    if kwargs.get("_no_metrics_reduce") or kwargs.get("return_state"):
        return None
    data = training_data
    if data.batches or data.batch_refs or data.episodes or data.episodes_refs:
        return None
    if data.data_iterators or not isinstance(data.batch, MultiAgentBatch):
        return None
    sizes = {len(b) for b in data.batch.policy_batches.values()}
    minibatch = kwargs.get("minibatch_size")
    if len(sizes) != 1 or (minibatch and sizes.pop() % minibatch):
        return None
    return data.batch


def _maybe_threshold_aware_init(module: Any) -> None:
    """``--spike-init threshold-aware``: calibrate the online network on random-play frames and
    copy it into the target, before PipelinedDQN publishes the first weights to the runners."""
    spec = getattr(module, "model_config", {}).get("spike_init_spec") or {}
    if spec.get("kind") != SpikeInit.THRESHOLD_AWARE.value:
        return
    from dsqn_rllib.envs.atari import AtariConfig, random_play_observations

    frames = random_play_observations(AtariConfig(spec["game"]), PROBE_FRAMES, seed=spec["seed"])
    device = next(module.net.parameters()).device
    gains = threshold_aware_init_(
        module.net, torch.as_tensor(frames, device=device), target_rate=spec["target_rate"]
    )
    module._target_net.load_state_dict(module.net.state_dict())
    module.spike_init_gains = gains  # what the calibration chose, for logs and tests
