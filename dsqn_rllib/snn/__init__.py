"""The spiking core: neurons and surrogate gradients, readouts, the Q-networks (DSQN, its
DQN twin, the MLPs), energy, spike init and health, the optimizer. PyTorch only: nothing here
imports Ray."""
