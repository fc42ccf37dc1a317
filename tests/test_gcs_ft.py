"""Ray GCS fault tolerance with the external Redis, as cluster/atari.yaml configures the head:
the GCS process dies and comes back, and a running job and a detached actor live through it
with their state.

`ray start --head` with RAY_REDIS_ADDRESS and a namespace of its own (own temp dir, own ports),
then the gcs_server is SIGKILLed and started again with its exact command line and environment,
which is what Ray's own tests do (``Node.kill_gcs_server(); Node.start_gcs_server()``, same
port, session and Redis) and what a supervisor (a KubeRay head pod restart) does on a cluster:
nothing on a `ray start` head restarts the GCS by itself.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def _load_local_cluster() -> ModuleType:
    """cluster/ holds scripts, not a package: import one by its path (once per session)."""
    if "local_cluster" in sys.modules:
        return sys.modules["local_cluster"]
    path = ROOT / "cluster" / "local_cluster.py"
    spec = importlib.util.spec_from_file_location("local_cluster", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_cluster"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


local_cluster = _load_local_cluster()  # free ports and the narrow `ray stop` of one temp dir

# The job: a detached counter actor, driven by a driver that keeps calling it.
JOB = textwrap.dedent(
    """
    import os, sys, time
    import ray

    @ray.remote(num_cpus=0)
    class Counter:
        def __init__(self):
            self.value = 0
        def incr(self):
            self.value += 1
            return self.value
        def pid(self):
            return os.getpid()

    ray.init(address=sys.argv[1], namespace="dsqn-gcs-ft", log_to_driver=False)
    counter = Counter.options(name="counter", lifetime="detached").remote()
    print("actor-pid", ray.get(counter.pid.remote()), flush=True)
    last = 0
    while not os.path.exists(sys.argv[2]):
        value = ray.get(counter.incr.remote(), timeout=60)
        assert value > last, (last, value)  # every call answered, in order
        last = value
        print("value", value, flush=True)
        time.sleep(0.2)
    print("final", last, flush=True)
    """
)
# A new driver after the restart: needs the GCS's tables (named actors, nodes) back from Redis.
PROBE = textwrap.dedent(
    """
    import sys
    import ray

    ray.init(address=sys.argv[1], namespace="dsqn-gcs-ft", log_to_driver=False)
    counter = ray.get_actor("counter")
    print("actor-pid", ray.get(counter.pid.remote()), flush=True)
    print("value", ray.get(counter.incr.remote()), flush=True)
    print("alive-nodes", sum(n["Alive"] for n in ray.nodes()), flush=True)
    """
)


def redis_client():
    import redis

    client = redis.Redis(REDIS_HOST, REDIS_PORT, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis on {REDIS_HOST}:{REDIS_PORT}")
    return client


def namespace_keys(client, namespace: str) -> list[bytes]:
    return list(client.scan_iter(match=f"*{namespace}*", count=1000))


def gcs_server_pids(base_dir: Path) -> list[int]:
    pids = []
    for pid in local_cluster.ray_processes(base_dir):
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:  # gone meanwhile
            continue
        if b"gcs_server" in argv0:
            pids.append(pid)
    return pids


def gcs_server_pid(base_dir: Path) -> int:
    pids = gcs_server_pids(base_dir)
    assert len(pids) == 1, pids
    return pids[0]


def wait_for_exit(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline and local_cluster._alive(pid):
        time.sleep(0.05)
    assert not local_cluster._alive(pid), f"process {pid} did not exit"


def lines_of(text: str, key: str) -> list[int]:
    return [int(line.split()[1]) for line in text.splitlines() if line.startswith(key + " ")]


@pytest.fixture
def head() -> Iterator[tuple[Path, str, dict[str, str]]]:
    """A `ray start --head` on external Redis: (temp dir, GCS address, the head's environment)."""
    client = redis_client()
    namespace = f"dsqn-gcs-ft-{uuid.uuid4().hex[:12]}"
    base = Path(tempfile.mkdtemp(prefix="dsqng-", dir="/tmp"))  # short: Ray's socket paths
    env = {
        **os.environ,
        "RAY_REDIS_ADDRESS": f"{REDIS_HOST}:{REDIS_PORT}",
        "RAY_external_storage_namespace": namespace,
        "RAY_TMPDIR": str(base),  # ray_current_cluster under base, not /tmp/ray
        "RAY_USAGE_STATS_ENABLED": "0",
        # Explicit: `ray start` turns token auth on when it finds ~/.ray/auth_token, which any
        # earlier plain ray.init() on this machine writes, and these drivers carry no token.
        "RAY_AUTH_MODE": "disabled",
    }
    env.pop("RAY_ADDRESS", None)
    ports = {name: local_cluster.free_port() for name in local_cluster.PORT_NAMES}
    worker_ports = local_cluster.worker_port_base()
    ray = str(Path(sys.executable).parent / "ray")
    start = [
        ray, "start", "--head", *(f"--{name}={port}" for name, port in ports.items()),
        f"--min-worker-port={worker_ports}",
        f"--max-worker-port={worker_ports + local_cluster.WORKER_PORT_SPAN - 1}",
        "--node-ip-address=127.0.0.1", f"--temp-dir={base / 'ray'}", "--num-cpus=1",
        "--include-dashboard=false", "--dashboard-host=127.0.0.1", "--disable-usage-stats",
    ]  # fmt: skip
    try:
        proc = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        address = (base / "ray" / "ray_current_cluster").read_text().strip()
        assert address.endswith(f":{ports['port']}")
        yield base, address, env
    finally:
        local_cluster.stop_ray(base)
        # Ray's own cleanup of a namespace (what KubeRay's cleanup job calls).
        from ray._private.gcs_utils import cleanup_redis_storage

        cleanup_redis_storage(REDIS_HOST, REDIS_PORT, "", False, namespace)
        left = namespace_keys(client, namespace)
        for key in left:  # belt and braces: the test must leave Redis as it found it
            client.delete(key)
        import shutil

        shutil.rmtree(base, ignore_errors=True)
        assert not left, f"cleanup_redis_storage left {left}"


@pytest.mark.slow
def test_job_and_detached_actor_survive_a_gcs_restart(
    head: tuple[Path, str, dict[str, str]],
) -> None:
    base, address, env = head
    namespace = env["RAY_external_storage_namespace"]
    assert namespace_keys(redis_client(), namespace), "the GCS keeps no tables in Redis"
    stop_file = base / "stop-job"
    python = sys.executable
    job = subprocess.Popen(
        [python, "-c", JOB, address, str(stop_file)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Wait until the job runs: the actor answered a few calls.
        out_lines: list[str] = []
        assert job.stdout is not None
        deadline = time.time() + 120
        while time.time() < deadline and len(lines_of("\n".join(out_lines), "value")) < 3:
            line = job.stdout.readline()
            assert line or job.poll() is None, job.stderr.read()[-3000:] if job.stderr else ""
            out_lines.append(line.strip())
        actor_pid = lines_of("\n".join(out_lines), "actor-pid")[0]

        # Kill the GCS (SIGKILL: no goodbye to Redis or the raylet), keep how it was started.
        pid = gcs_server_pid(base)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        environ = dict(
            item.split(b"=", 1)
            for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if b"=" in item
        )
        assert environ[b"RAY_external_storage_namespace"] == namespace.encode()
        os.kill(pid, signal.SIGKILL)
        wait_for_exit(pid)
        time.sleep(2)  # the job keeps calling its actor meanwhile (worker to worker)

        restarted_log = base / "gcs_server.restarted.out"
        with restarted_log.open("wb") as log:
            gcs = subprocess.Popen(
                argv, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        # The new GCS is the one Ray process named gcs_server (once it shows in /proc).
        deadline = time.time() + 10
        while time.time() < deadline and gcs.poll() is None and not gcs_server_pids(base):
            time.sleep(0.05)
        assert gcs.poll() is None, f"the restarted GCS exited: {restarted_log.read_text()[-3000:]}"
        assert gcs_server_pid(base) == gcs.pid != pid

        probe = subprocess.run(
            [python, "-c", PROBE, address], env=env, capture_output=True, text=True, timeout=120
        )
        assert probe.returncode == 0, probe.stderr[-3000:]
        # The same actor process (not a restart) with its state, found by name in the new GCS.
        assert lines_of(probe.stdout, "actor-pid") == [actor_pid]
        probe_value = lines_of(probe.stdout, "value")[0]
        assert probe_value > 3
        assert lines_of(probe.stdout, "alive-nodes") == [1]

        stop_file.touch()
        out, err = job.communicate(timeout=60)
        assert job.returncode == 0, err[-3000:]
        values = lines_of("\n".join([*out_lines, out]), "value")
        final = lines_of(out, "final")[0]
        # The running driver went on through the restart: counts past the probe's increment.
        assert final > probe_value and values[-1] == final
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
