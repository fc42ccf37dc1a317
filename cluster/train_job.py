"""The entry of ``ray submit``: run ``dsqn`` on the cluster's head node, joined to its Ray.

    ray submit cluster/atari.yaml cluster/train_job.py -- train --game pong --num-env-runners 64
    ray submit cluster/atari.yaml cluster/train_job.py -- sweep --preset paper-17 --run-dir ~/runs

``ray submit`` copies this file to the head's home directory and runs it with the head's
``python``; everything after ``--`` is ``dsqn``'s command line, any command (``train`` is
implied when the first argument is a flag, so ``-- --game pong`` works too). RAY_ADDRESS=auto
makes the driver join the cluster that ``ray up`` started on the head instead of starting a Ray
of its own (``dsqn_rllib.run.ensure_ray``): the env runners are then placed on the autoscaled
workers, and a sweep's trials wherever their resources are (a GPU learner: on the head).

The head's ``~/.dsqn/redis.env`` (copied there by ``atari.yaml``'s file_mounts) is read into the
environment first, without overriding what is set: with ``DSQN_REDIS_URL`` and
``DSQN_REDIS_PASSWORD`` in it, the run registry lives in the cluster's Redis too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REDIS_ENV_FILE = Path("~/.dsqn/redis.env")


def load_env_file(path: Path, environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines) into ``environ`` where not yet set; the
    keys it set. A missing file sets nothing."""
    path = path.expanduser()
    if not path.is_file():
        return []
    added = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip().strip("'\"")
        if key and key not in environ:
            environ[key] = value
            added.append(key)
    return added


def dsqn_argv(argv: list[str]) -> list[str]:
    """``dsqn``'s arguments: ``train`` when none or a flag comes first, else as given (``dsqn``
    itself says in one line when a command is unknown)."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return ["train", *argv]
    return argv


def main(argv: list[str] | None = None) -> int:
    load_env_file(REDIS_ENV_FILE)
    # Only where the caller has not named a cluster: a local test may pin an exact address.
    os.environ.setdefault("RAY_ADDRESS", "auto")
    from dsqn_rllib.cli import main as dsqn_main

    return dsqn_main(dsqn_argv(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
