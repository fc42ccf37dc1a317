"""The paper's evaluation protocol, GIFs of episodes, and the run report's plots."""
