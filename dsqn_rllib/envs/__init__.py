"""Environments: Atari through ale-py (the DQN protocol's wrappers, written out in order)."""
