"""The cluster path: cluster/atari.yaml through Ray's own config validation, and the same
`ray up` / `ray submit` / `ray down` for real on a local-provider cluster at 127.0.0.1 over SSH
(a real sshd of Debian's openssh-server, started here on a free port with throwaway keys)."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from getpass import getuser
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def load_module(path: Path) -> ModuleType:
    """cluster/ holds scripts, not a package: import one by its path."""
    if path.stem in sys.modules:
        return sys.modules[path.stem]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


local_cluster = load_module(CLUSTER / "local_cluster.py")
train_job = load_module(CLUSTER / "train_job.py")


# --- cluster/atari.yaml: what `ray up` checks before it asks the cloud for anything ------------


def prepared_atari_config() -> dict:
    """The config as `ray up` prepares it (defaults of the provider, merged commands, per-type
    worker bounds), then Ray's schema and consistency checks, as in commands._bootstrap_config."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((CLUSTER / "atari.yaml").read_text())
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def test_atari_yaml_passes_ray_validation() -> None:
    config = prepared_atari_config()
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) >= 1, "the learner needs the head's GPU"
    assert head["max_workers"] == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(t["resources"].get("CPU", 0) >= 8 for t in workers)
    assert all(0 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"] for t in workers)
    # prepare_config merged the common setup into head and worker setup: the checkout is installed
    assert any("pip install" in c for c in config["head_setup_commands"])
    assert any("pip install" in c for c in config["worker_setup_commands"])


def test_atari_yaml_image_mounts_redis_and_prometheus() -> None:
    config = prepared_atari_config()
    docker = config["docker"]
    assert docker["head_image"].endswith("-gpu") and docker["worker_image"].endswith("-cpu")
    # Local sources of file mounts exist (relative to the repository root, where `ray up` runs),
    # except the Redis credentials, which live outside the repository by design.
    for remote, local in config["file_mounts"].items():
        if local.startswith("~"):
            assert "redis" in remote and not (ROOT / local.lstrip("~/")).exists()
        else:
            assert (ROOT / local).exists(), f"file mount source {local} is missing"
    start = " ".join(config["head_start_ray_commands"])
    # GCS fault tolerance: external Redis and a namespace of this cluster; no secret committed.
    assert "RAY_REDIS_ADDRESS" in start and "RAY_external_storage_namespace=" in start
    assert re.search(r"--redis-password=(\S+)", start).group(1).startswith('"$')
    text = (CLUSTER / "atari.yaml").read_text()
    assert not re.search(r"(?i)password\s*[:=]\s*['\"]?[A-Za-z0-9]{6,}", text)
    # Prometheus on the head with the project's scrape configuration, on 127.0.0.1 only.
    match = re.search(r"--config\.file=\S*?/dsqn_rllib/(\S+)", start)
    assert match and match.group(1) == "dashboards/prometheus.yml"
    assert (ROOT / match.group(1)).is_file()
    assert "--web.listen-address=127.0.0.1:9090" in start
    assert "--dashboard-host=127.0.0.1" in start


def test_train_job_runs_dsqn_with_train_as_the_default_command() -> None:
    assert train_job.dsqn_argv(["--game", "pong"]) == ["train", "--game", "pong"]
    assert train_job.dsqn_argv(["train", "--game", "pong"]) == ["train", "--game", "pong"]
    assert train_job.dsqn_argv(["report", "runs/x"]) == ["report", "runs/x"]
    assert train_job.dsqn_argv([]) == ["train"]
    for command in ("sweep", "compare", "robustness", "runs", "eval"):  # every dsqn command
        assert train_job.dsqn_argv([command, "--run-dir", "r"]) == [command, "--run-dir", "r"]


def test_train_job_reads_the_redis_env_file_without_overriding(tmp_path: Path) -> None:
    env_file = tmp_path / "redis.env"
    env_file.write_text(
        "# written by cluster/README.md's command\n"
        "RAY_REDIS_ADDRESS=10.0.0.5:6379\n"
        "export DSQN_REDIS_URL='redis://10.0.0.5:6379/0'\n"
        "DSQN_REDIS_PASSWORD=from-file\n\n"
    )
    environ = {"DSQN_REDIS_PASSWORD": "from-env"}
    added = train_job.load_env_file(env_file, environ)
    assert added == ["RAY_REDIS_ADDRESS", "DSQN_REDIS_URL"]
    assert environ == {
        "DSQN_REDIS_PASSWORD": "from-env",
        "RAY_REDIS_ADDRESS": "10.0.0.5:6379",
        "DSQN_REDIS_URL": "redis://10.0.0.5:6379/0",
    }
    assert train_job.load_env_file(tmp_path / "missing.env", environ) == []


# --- the local-provider cluster, for real ---------------------------------------------------


@dataclass
class SshServer:
    port: int
    client_key: Path
    base_dir: Path
    process: subprocess.Popen


def _wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 15.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert process.poll() is None, "sshd exited at start"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"sshd did not listen on 127.0.0.1:{port}")


@pytest.fixture
def sshd() -> Iterator[SshServer]:
    """Debian's sshd on a free 127.0.0.1 port: throwaway host and client keys, root by key only,
    config and keys in a temp dir. HOME of its sessions is base_dir/home (see local_cluster)."""
    if not os.access(SSHD, os.X_OK):
        pytest.skip(f"no sshd at {SSHD}: install Debian's openssh-server (scripts/test.sh does)")
    missing = [tool for tool in ("ssh", "ssh-keygen", "rsync") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"`ray up` needs {', '.join(missing)} (Debian's openssh-client, rsync)")
    if getuser() != "root":
        pytest.skip("the local cluster logs in as root over SSH: run the tests as root")
    # Short: Ray's unix sockets go under base_dir/ray/session_*/sockets (108-byte limit).
    base = Path(tempfile.mkdtemp(prefix="dsqnc-", dir="/tmp"))
    ssh = base / "ssh"
    ssh.mkdir()
    for key in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / key)], check=True
        )
    (ssh / "authorized_keys").write_text((ssh / "client_key.pub").read_text())
    port = local_cluster.free_port()
    (ssh / "sshd_config").write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {ssh / 'host_key'}\n"
        f"PidFile {ssh / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {ssh / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        # The keys live in /tmp (world-writable), which strict modes would refuse.
        "StrictModes no\n"
        # The launcher's ~ (bootstrap files, .bashrc) is the temp dir, not root's real home.
        f"SetEnv HOME={base / 'home'}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation dir (Debian's unit)
    log = (ssh / "sshd.log").open("w")
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(ssh / "sshd_config")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_for_port(port, process)
        yield SshServer(port, ssh / "client_key", base, process)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def ray_cli(
    cluster, *args: str, timeout: int = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    ray = str(Path(sys.executable).parent / "ray")
    proc = subprocess.run(
        [ray, *args], capture_output=True, text=True, timeout=timeout, env=cluster.env()
    )
    if check:
        assert proc.returncode == 0, (
            f"ray {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def default_address_file() -> str | None:
    """What a plain ray.init() on this machine would join (Ray's default temp dir)."""
    path = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    return path.read_text() if path.exists() else None


@pytest.mark.slow
def test_local_cluster_up_submit_down(sshd: SshServer) -> None:
    name = f"dsqn-local-{os.getpid()}-{int(time.time())}"
    cluster = local_cluster.LocalCluster(
        sshd.base_dir, ssh_port=sshd.port, ssh_key=sshd.client_key, name=name
    )
    config = str(local_cluster.write_local_cluster(cluster))
    address_before = default_address_file()
    # The launcher's SSH multiplexing sockets: /tmp/ray_ssh_<user hash>/<cluster hash>.
    control_dir = (
        Path("/tmp")
        / ("ray_ssh_" + hashlib.sha256(getuser().encode()).hexdigest()[:10])
        / hashlib.sha256(name.encode()).hexdigest()[:10]
    )
    run_dir = sshd.base_dir / "runs"
    wrapped_stop = False
    try:
        up = ray_cli(cluster, "up", "-y", "--no-config-cache", "--disable-usage-stats", config)
        assert "Ray runtime started" in up.stdout + up.stderr
        assert (
            (cluster.ray_temp_dir / "ray_current_cluster")
            .read_text()
            .endswith(f":{cluster.ports['port']}")
        )
        # `ray down` runs `ray stop` on the head, which would stop every Ray on this machine:
        # it may run only if the head's `ray` is the wrapper that stops this cluster alone.
        which = ray_cli(cluster, "exec", "--no-config-cache", config, "command -v ray")
        assert str(sshd.base_dir / "bin" / "ray") in which.stdout, which.stdout
        wrapped_stop = True

        submit = ray_cli(
            cluster, "submit", "--no-config-cache", config, str(CLUSTER / "train_job.py"), "--",
            "--env", "CartPole-v1", "--hidden-sizes", "32,32", "--T", "2",
            "--num-env-runners", "1", "--envs-per-runner", "2", "--total-steps", "400",
            "--learning-starts", "200", "--train-batch-size", "16", "--train-every", "4",
            "--buffer-size", "2000", "--target-update-period", "100", "--eval-interval", "0",
            "--checkpoint-interval", "200", "--run-dir", str(run_dir), "--run-id", "on-cluster",
        )  # fmt: skip
        out = submit.stdout + submit.stderr
        # The driver joined the launched cluster (RAY_ADDRESS=auto), not a Ray of its own.
        assert re.search(
            rf"Connecting to existing Ray cluster at address: [\d.]+:{cluster.ports['port']}", out
        ), out[-3000:]
        assert "[on-cluster] done:" in out, out[-3000:]
        progress = json.loads((run_dir / "on-cluster/checkpoints/latest/progress.json").read_text())
        assert progress["env_steps"] >= 400 and progress["updates"] > 0
        lines = (run_dir / "on-cluster" / "metrics.jsonl").read_text().splitlines()
        assert lines and json.loads(lines[-1])["healthy_runners"] == 1
    finally:
        if wrapped_stop:
            down = ray_cli(cluster, "down", "-y", config, check=False)
        left = local_cluster.ray_processes(sshd.base_dir)
        local_cluster.stop_ray(sshd.base_dir)  # whatever happened above
        shutil.rmtree(control_dir, ignore_errors=True)
    assert down.returncode == 0, down.stderr[-3000:]
    assert not left, f"ray down left processes of the cluster: {left}"
    assert not (cluster.ray_temp_dir / "ray_current_cluster").exists()
    assert default_address_file() == address_before, "the cluster touched /tmp/ray"
