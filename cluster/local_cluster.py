"""The cluster path on one machine: a Ray local-provider cluster on 127.0.0.1 over SSH.

    config = write_local_cluster(LocalCluster(base_dir, ssh_port=2222, ssh_key=key))
    ray up -y config
    ray submit config cluster/train_job.py -- --env CartPole-v1 ...
    ray down -y config

It is the same `ray up` / `ray submit` / `ray down` as cluster/atari.yaml, with an on-premise
head at 127.0.0.1 instead of an EC2 instance and the running Python environment instead of the
Docker image. Everything it starts is confined to ``base_dir`` so that it can share a machine with
other Rays:

- sshd (started by the caller) sets HOME to ``base_dir/home``; Ray's ``~/ray_bootstrap_*`` files
  and the ``~/.bashrc`` that every launcher command sources live there, not in the real home.
- That .bashrc puts the environment's ``bin`` on PATH (the launcher's login shells reset it) and
  sets RAY_TMPDIR, so Ray's temp dir, its ``ray_current_cluster`` file and the local provider's
  state are under ``base_dir`` (a later plain ``ray.init()`` elsewhere does not find this cluster).
- Every port is given explicitly (``ports``), none of Ray's defaults.
- ``ray`` on that PATH is a wrapper: ``ray stop`` (which ``ray down`` runs on the head, and which
  kills *every* Ray process of the machine) stops only the processes of this temp dir.

``python cluster/local_cluster.py stop BASE_DIR`` is that narrow ``ray stop``.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shlex
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Ray's own ports on the head; each gets a free port of 127.0.0.1 unless given.
PORT_NAMES = (
    "port",
    "dashboard-port",
    "ray-client-server-port",
    "node-manager-port",
    "object-manager-port",
    "metrics-export-port",
    "dashboard-agent-grpc-port",
    "dashboard-agent-listen-port",
    "runtime-env-agent-port",
)
# Worker processes take ports from a range of 200, below Linux's ephemeral ports (32768+, where
# free_port's picks come from) and above Ray's default range (10002-19999).
WORKER_PORT_SPAN = 200


def worker_port_base() -> int:
    return random.randrange(20_000, 32_768 - WORKER_PORT_SPAN, WORKER_PORT_SPAN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalCluster:
    """One local-provider cluster under ``base_dir`` (keep it short: Ray's sockets live there)."""

    base_dir: Path
    ssh_port: int
    ssh_key: Path
    ssh_user: str = "root"
    name: str = "dsqn-local"
    python_bin: Path = field(default_factory=lambda: Path(sys.executable).parent)
    num_cpus: int = 4
    ports: dict[str, int] = field(default_factory=dict)
    min_worker_port: int = field(default_factory=worker_port_base)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir)
        for name in PORT_NAMES:
            self.ports.setdefault(name, free_port())

    @property
    def home(self) -> Path:
        return self.base_dir / "home"

    @property
    def ray_temp_dir(self) -> Path:
        """Where RAY_TMPDIR=base_dir puts Ray's temp dir."""
        return self.base_dir / "ray"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.ports['port']}"

    @property
    def config_path(self) -> Path:
        return self.base_dir / "cluster.yaml"

    def env(self) -> dict[str, str]:
        """Environment of `ray up/submit/down` here: the provider's state files under base_dir."""
        return {
            **os.environ,
            "RAY_TMPDIR": str(self.base_dir),
            "TMPDIR": str(self.base_dir),
            "RAY_USAGE_STATS_ENABLED": "0",
        }


def _start_command(c: LocalCluster) -> str:
    flags = [f"--{name}={port}" for name, port in c.ports.items()]
    flags += [
        f"--min-worker-port={c.min_worker_port}",
        f"--max-worker-port={c.min_worker_port + WORKER_PORT_SPAN - 1}",
        "--node-ip-address=127.0.0.1",
        f"--temp-dir={c.ray_temp_dir}",
        f"--num-cpus={c.num_cpus}",
        # Nothing here needs the dashboard's UI; Ray still runs its head process (jobs API).
        "--include-dashboard=false",
        "--dashboard-host=127.0.0.1",
        "--disable-usage-stats",
        "--autoscaling-config=~/ray_bootstrap_config.yaml",
    ]
    return "ray start --head " + " ".join(flags)


def _bashrc(c: LocalCluster) -> str:
    return (
        "# Sourced by every command of the Ray cluster launcher (cluster/local_cluster.py).\n"
        f"export PATH={shlex.quote(str(c.base_dir / 'bin'))}:"
        f"{shlex.quote(str(c.python_bin))}:$PATH\n"
        f"export RAY_TMPDIR={shlex.quote(str(c.base_dir))}\n"
        "export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1\n"
    )


def _ray_wrapper(c: LocalCluster) -> str:
    python = shlex.quote(str(c.python_bin / "python"))
    return (
        "#!/bin/bash\n"
        "# `ray stop` stops every Ray of the machine: here only this cluster's processes.\n"
        'if [ "$1" = stop ]; then\n'
        f"  exec {python} {shlex.quote(str(Path(__file__).resolve()))} stop "
        f"{shlex.quote(str(c.base_dir))}\n"
        "fi\n"
        f'exec {shlex.quote(str(c.python_bin / "ray"))} "$@"\n'
    )


def write_local_cluster(c: LocalCluster) -> Path:
    """Write the cluster YAML, the remote HOME (.bashrc) and the ``ray`` wrapper; the YAML path."""
    c.home.mkdir(parents=True, exist_ok=True)
    (c.home / ".bashrc").write_text(_bashrc(c))
    bin_dir = c.base_dir / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "ray").write_text(_ray_wrapper(c))
    (bin_dir / "ray").chmod(0o755)
    config = {
        "cluster_name": c.name,
        "max_workers": 0,
        "provider": {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []},
        "auth": {
            "ssh_user": c.ssh_user,
            "ssh_private_key": str(c.ssh_key),
            # The launcher has no SSH port setting: reach sshd's own port through a proxy (bash's
            # /dev/tcp, so nothing beyond bash is needed).
            "ssh_proxy_command": (
                f"bash -c 'exec 3<>/dev/tcp/%h/{c.ssh_port}; cat <&3 & exec cat >&3'"
            ),
        },
        # The environment is already installed here: no Docker, no setup commands.
        "file_mounts": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": ["ray stop", _start_command(c)],
        "worker_start_ray_commands": [],
    }
    c.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return c.config_path


def ray_processes(base_dir: Path) -> list[int]:
    """PIDs of the Ray whose temp dir is ``base_dir/ray``: each of its processes names it (or a
    path under it) in its argv; `ray up` and `ray submit`, which name ``base_dir``'s YAML, do not.
    Linux /proc, so that it needs no package."""
    temp_dir = re.escape(str((Path(base_dir) / "ray").resolve()).encode())
    pattern = re.compile(temp_dir + rb"(/|\0|$)")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if pattern.search(argv):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; its parent has yet to reap it


def stop_ray(base_dir: Path, grace_s: float = 5.0) -> int:
    """``ray stop`` for this cluster only: SIGTERM, then SIGKILL after ``grace_s``; the count."""
    pids = ray_processes(base_dir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + grace_s
        while time.time() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.2)
    # As `ray stop` does: forget the address, so nothing joins a stopped cluster.
    (Path(base_dir) / "ray" / "ray_current_cluster").unlink(missing_ok=True)
    return len(pids)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "stop":
        print("usage: python cluster/local_cluster.py stop BASE_DIR", file=sys.stderr)
        return 2
    started = time.time()
    count = stop_ray(Path(argv[1]))
    print(f"Stopped {count} Ray processes under {argv[1]} in {time.time() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
