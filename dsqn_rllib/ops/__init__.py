"""Operations: Prometheus metrics, the run registry (Redis or SQLite), checkpoints, runtime."""
