"""The entry of ``ray submit``: run ``dsqn`` on the cluster's head node, joined to its Ray.

    ray submit cluster/atari.yaml cluster/train_job.py -- train --game pong --num-env-runners 64

``ray submit`` copies this file to the head's home directory and runs it with the head's
``python``; everything after ``--`` is ``dsqn``'s command line (``train`` is implied when the
first argument is a flag, so ``-- --game pong`` works too). RAY_ADDRESS=auto makes the driver
join the cluster that ``ray up`` started on the head instead of starting a Ray of its own
(``dsqn_rllib.train.ensure_ray``): the env runners are then placed on the autoscaled workers.
"""

from __future__ import annotations

import os
import sys

COMMANDS = ("train", "eval", "report")


def dsqn_argv(argv: list[str]) -> list[str]:
    """``dsqn``'s arguments: ``train`` is the default command."""
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        return ["train", *argv]
    return argv


def main(argv: list[str] | None = None) -> int:
    # Only where the caller has not named a cluster: a local test may pin an exact address.
    os.environ.setdefault("RAY_ADDRESS", "auto")
    from dsqn_rllib.cli import main as dsqn_main

    return dsqn_main(dsqn_argv(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
