"""Synaptic-operation and energy accounting against numbers computed by hand."""

from __future__ import annotations

import pytest
import torch

from dsqn_rllib import DQN, DSQN, energy_report
from dsqn_rllib.snn.energy import E_AC_PJ, E_MAC_PJ

# Dense MACs of the Nature CNN on 4x84x84 with 6 actions, written out:
CONV1 = 32 * 20 * 20 * (4 * 8 * 8)  # 3,276,800
CONV2 = 64 * 9 * 9 * (32 * 4 * 4)  # 2,654,208
CONV3 = 64 * 7 * 7 * (64 * 3 * 3)  # 1,806,336
FC = 3136 * 512  # 1,605,632
OUT = 512 * 6  # 3,072
DENSE = CONV1 + CONV2 + CONV3 + FC + OUT


def test_dqn_costs_its_dense_macs() -> None:
    report = energy_report(DQN((4, 84, 84), 6))
    assert [layer.dense_ops for layer in report.layers] == [CONV1, CONV2, CONV3, FC, OUT]
    assert report.total_macs == DENSE and report.total_acs == 0
    assert report.energy_pj == pytest.approx(DENSE * E_MAC_PJ)
    assert report.ann_energy_pj == pytest.approx(DENSE * 4.6)


def test_dsqn_first_layer_macs_later_layers_rate_times_T_times_dense() -> None:
    rates = {"conv1": 0.2, "conv2": 0.1, "conv3": 0.05, "fc": 0.5}
    report = energy_report(DSQN((4, 84, 84), 6, T=8), rates)
    expected_acs = 0.2 * 8 * CONV2 + 0.1 * 8 * CONV3 + 0.05 * 8 * FC + 0.5 * 8 * OUT
    assert report.total_macs == CONV1
    assert report.total_acs == pytest.approx(expected_acs)
    assert report.energy_pj == pytest.approx(CONV1 * 4.6 + expected_acs * 0.9)
    assert report.ann_energy_pj == pytest.approx(DENSE * E_MAC_PJ)
    assert report.energy_ratio_vs_ann == pytest.approx(
        (CONV1 * 4.6 + expected_acs * E_AC_PJ) / (DENSE * 4.6)
    )


def test_energy_from_a_real_forward_pass() -> None:
    torch.manual_seed(0)
    net = DSQN((4, 84, 84), 6, T=4)
    _, stats = net(torch.rand(2, 4, 84, 84), return_stats=True)
    report = energy_report(net, stats.rates)
    assert report.layers[0].energy_pj == pytest.approx(CONV1 * E_MAC_PJ)
    assert report.layers[1].acs == pytest.approx(stats.rates["conv1"].item() * 4 * CONV2)


def test_spiking_energy_needs_all_rates() -> None:
    with pytest.raises(ValueError, match="lacks layer"):
        energy_report(DSQN((4, 84, 84), 6), {"conv1": 0.1})
    with pytest.raises(ValueError, match="needs its firing rates"):
        energy_report(DSQN((4, 84, 84), 6))


@pytest.mark.parametrize("obs_shape", [(4, 84, 84), (84, 84, 4)])
def test_channel_last_frames_cost_the_same_as_channel_first(obs_shape: tuple) -> None:
    """conv1's fan-in is the 4 stacked frames whichever axis holds them (never 84)."""
    rates = {"conv1": 0.2, "conv2": 0.1, "conv3": 0.05, "fc": 0.5}
    dense = energy_report(DQN(obs_shape, 6))
    assert [layer.dense_ops for layer in dense.layers] == [CONV1, CONV2, CONV3, FC, OUT]
    spiking = energy_report(DSQN(obs_shape, 6, T=8), rates)
    expected_acs = 0.2 * 8 * CONV2 + 0.1 * 8 * CONV3 + 0.05 * 8 * FC + 0.5 * 8 * OUT
    assert spiking.total_macs == CONV1
    assert spiking.total_acs == pytest.approx(expected_acs)
