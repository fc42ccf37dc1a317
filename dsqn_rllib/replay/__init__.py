"""Replay memory: frames stored once as uint8, n-step targets, uniform sampling (numpy only)."""
