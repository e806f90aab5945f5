"""Container images of the packaged Bento, built and run with podman, no registry needed.

`build` makes two images. The base is a minimal Debian root made by `debootstrap` from
the system's package mirror with Debian's Python (no base image is pulled), imported
into podman and tagged by a hash of its recipe, so it is made once and reused. The
service image is the project's `Containerfile` on top: a virtual environment with only
what the champion's kind needs to serve (a tree champion needs no torch), installed
from the same package index as the project's set-up (the host's pip settings, mounted
at build time and never stored in the image), constrained by the project's lock, then
the Bento and its model. It runs as a non-root user, health-checks `/readyz`.

Podman runs with the settings in `containers.conf` beside this module (the runc
runtime, explicit ulimits), passed through CONTAINERS_CONF, never by changing the
machine's own configuration.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from flowsentry.errors import FlowsentryError
from flowsentry.models import kinds

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CONTAINERFILE = HERE / "Containerfile"
CONTAINERS_CONF = HERE / "containers.conf"
IMAGE = "localhost/flowsentry"
BASE_IMAGE = "localhost/flowsentry-base"
SUITE = "bookworm"  # Debian 12: its python3 is 3.11, the project's Python
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
# Dropped from the base root: documentation, manuals, the package lists and archives.
BASE_PRUNE = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "var/cache/apt",
    "var/lib/apt/lists",
)
CONTAINER_PORT = 3000
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}


def requirements_for(kind: str, runtime: dict[str, Any] | None = None) -> list[str]:
    """The top-level packages a champion of `kind` (run by `runtime`, its metadata's
    ONNX runtime if any) needs to serve, as the registry of kinds lists them."""
    return kinds.get(kind).requirements(runtime)


def require_tools(*names: str) -> None:
    """Fail with the packages to install when podman, runc or debootstrap is missing."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        packages = " ".join(TOOLS[name] for name in missing)
        raise FlowsentryError(
            f"container: {', '.join(missing)} not found; install the Debian packages: "
            f"apt-get install -y {packages}"
        )
    if os.geteuid() != 0:
        raise FlowsentryError(
            "container: building and running images needs root here (debootstrap, and "
            "podman with the runc runtime); run as root or in CI"
        )


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 600, stdin: Any = None) -> str:
    """Run `podman ARGS` with the project's containers.conf; stdout, or an error naming
    the command and podman's own last words."""
    command = ["podman", *args]
    try:
        done = subprocess.run(
            command,
            env=podman_env(),
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise FlowsentryError(f"`{shlex.join(command)}` took over {timeout:.0f} s") from None
    if done.returncode != 0:
        raise FlowsentryError(
            f"`{shlex.join(command)}` failed (exit {done.returncode}): "
            f"{done.stderr.strip()[-2000:]}"
        )
    return done.stdout


def image_exists(name: str) -> bool:
    done = subprocess.run(
        ["podman", "image", "exists", name], env=podman_env(), capture_output=True
    )
    return done.returncode == 0


def image_size(name: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", name).strip())


# -- the base image ----------------------------------------------------------------


def base_tag(suite: str = SUITE, packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    """The base image's name: its recipe's hash, so a changed recipe makes a new one."""
    recipe = json.dumps(
        {"suite": suite, "variant": "minbase", "packages": sorted(packages), "prune": BASE_PRUNE}
    )
    return f"{BASE_IMAGE}:{suite}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def base_image(suite: str = SUITE, mirror: str = MIRROR) -> tuple[str, bool]:
    """The base image (made now unless it exists); returns (name, made_now)."""
    name = base_tag(suite)
    if image_exists(name):
        log.info("base image %s exists: reused", name)
        return name, False
    root = Path(tempfile.mkdtemp(prefix="flowsentry-rootfs-", dir="/var/tmp"))
    try:
        log.info("debootstrap %s (%s) from %s", suite, ", ".join(BASE_PACKAGES), mirror)
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            suite,
            str(root),
            mirror,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise FlowsentryError(
                f"`{shlex.join(command)}` failed (exit {done.returncode}): "
                f"{(done.stdout + done.stderr).strip()[-2000:]}"
            )
        for sub in BASE_PRUNE:
            target = root / sub
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            podman("import", "--change", "ENV LANG=C.UTF-8", "-", name, stdin=tar.stdout)
        finally:
            tar.wait()
        log.info("base image %s made (%.0f MB)", name, image_size(name) / 1e6)
        return name, True
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- pip settings for the build ---------------------------------------------------------


@dataclass(frozen=True)
class PipSettings:
    """The host's package-index settings, as a pip.conf for the build and the local
    folders it names (mounted read-only at the same paths)."""

    conf: str
    mounts: tuple[Path, ...]


PIP_KEYS = ("index-url", "extra-index-url", "find-links", "trusted-host", "timeout")


def pip_settings(listing: str, environ: dict[str, str] | None = None) -> PipSettings:
    """Translate `pip config list` output and PIP_* variables into a pip.conf.

    Later files override earlier ones and the environment overrides files, as pip does.
    Local folders and file:// URLs become read-only mounts; the certificate bundle is
    always the host's, mounted over the image's, so `cert` is not carried.
    """
    values: dict[str, str] = {}
    for line in listing.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        option = key.split(".", 1)[-1].strip()
        if option in PIP_KEYS:
            try:
                values[option] = shlex.split(raw)[0] if raw.strip() else ""
            except (ValueError, IndexError):
                continue
    for option in PIP_KEYS:
        env_value = (environ or {}).get("PIP_" + option.upper().replace("-", "_"))
        if env_value is not None:
            values[option] = env_value
    for option, value in list(values.items()):
        if not value.isprintable():  # a line break would end the option in pip.conf
            log.warning("pip setting %s has control characters: not carried", option)
            del values[option]
    mounts: list[Path] = []
    for option in ("index-url", "extra-index-url", "find-links"):
        for item in values.get(option, "").split():
            path = Path(urlparse(item).path) if item.startswith("file:") else Path(item)
            if item.startswith(("file:", "/")) and path.exists() and path not in mounts:
                mounts.append(path)
    lines = ["[global]", "disable-pip-version-check = true", "no-input = true"]
    lines += [f"{option} = {values[option]}" for option in PIP_KEYS if values.get(option)]
    if CA_BUNDLE.is_file():  # the host's bundle, mounted at the same path
        lines.append(f"cert = {CA_BUNDLE}")
    return PipSettings("\n".join(lines) + "\n", tuple(mounts))


def host_pip_settings() -> PipSettings:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    )
    return pip_settings(done.stdout if done.returncode == 0 else "", dict(os.environ))


# -- the service image ------------------------------------------------------------------


def _bento(tag: str | None):
    import bentoml

    try:
        return bentoml.bentos.get(tag or "flowsentry:latest")
    except bentoml.exceptions.NotFound:
        raise FlowsentryError(
            f"container: no Bento '{tag or 'flowsentry:latest'}' in the Bento store; package "
            "the champion first (`make run`, or `flowsentry package`)"
        ) from None


def build_context(bento, target: Path) -> dict[str, Any]:
    """Lay out the build context in `target`: the Bento with its model under
    bento/models (BentoML's own layout), the requirements and constraints, the
    Containerfile. Returns what went in."""
    import bentoml

    from flowsentry.models.detector import read_metadata

    models = [m for m in bento.info.all_models if m.registry == "bentoml"]
    if len(models) != 1:
        raise FlowsentryError(
            f"container: Bento {bento.tag} serves {len(models)} models; expected one"
        )
    model = bentoml.models.get(models[0].tag)
    metadata = read_metadata(Path(model.path))
    kind = metadata["kind"]
    top = Path(bento.path)

    def top_models(folder: str, names: list[str]) -> list[str]:  # the Bento's own, if any
        return ["models"] if Path(folder) == top and "models" in names else []

    shutil.copytree(top, target / "bento", ignore=top_models)
    store = target / "bento" / "models" / model.tag.name
    shutil.copytree(model.path, store / model.tag.version)
    (store / "latest").write_text(model.tag.version)
    requirements = requirements_for(kind, metadata.get("runtime"))
    (target / "requirements.txt").write_text("\n".join(requirements) + "\n")
    shutil.copy(
        Path(bento.path) / "env" / "python" / "requirements.txt", target / "constraints.txt"
    )
    shutil.copy(CONTAINERFILE, target / "Containerfile")
    return {"model": str(model.tag), "kind": kind, "requirements": requirements}


def build(
    bento_tag: str | None = None,
    suite: str = SUITE,
    mirror: str = MIRROR,
    reports: Path | None = None,
) -> dict[str, Any]:
    """Build the service image of `bento_tag` (default: the newest flowsentry Bento);
    returns, and writes to reports/container.json, what was built and how big it is."""
    from flowsentry.io import write_json

    require_tools("podman", "runc", "debootstrap")
    bento = _bento(bento_tag)
    started = time.monotonic()
    base, made = base_image(suite, mirror)
    base_seconds = time.monotonic() - started
    image = f"{IMAGE}:{bento.tag.version}"
    pip = host_pip_settings()
    with tempfile.TemporaryDirectory(prefix="flowsentry-image-") as tmp:
        context = Path(tmp) / "context"
        context.mkdir()
        content = build_context(bento, context)
        conf = Path(tmp) / "pip.conf"
        conf.write_text(pip.conf)
        volumes = [f"{conf}:/etc/pip.conf:ro"]
        if CA_BUNDLE.is_file():
            volumes.append(f"{CA_BUNDLE}:{CA_BUNDLE}:ro")
        volumes += [f"{path}:{path}:ro" for path in pip.mounts]
        log.info(
            "building %s from Bento %s (%s, %s)",
            image,
            bento.tag,
            content["model"],
            content["kind"],
        )
        podman(
            "build",
            "--format", "docker",  # keeps HEALTHCHECK
            "--network", "host",
            *[arg for volume in volumes for arg in ("--volume", volume)],
            "--build-arg", f"BASE_IMAGE={base}",
            "--label", f"org.flowsentry.bento={bento.tag}",
            "--label", f"org.flowsentry.model={content['model']}",
            "--tag", image,
            "--tag", f"{IMAGE}:latest",
            str(context),
            timeout=1800,
        )  # fmt: skip
    result = {
        "image": image,
        "base": base,
        "base_made": made,
        "base_seconds": round(base_seconds, 1),
        "bento": str(bento.tag),
        **content,
        "size_mb": round(image_size(image) / 1e6, 1),
        "build_seconds": round(time.monotonic() - started, 1),
    }
    if reports is not None:
        write_json(result, reports / "container.json")
    log.info("built %s: %.0f MB in %.0f s", image, result["size_mb"], result["build_seconds"])
    return result


# -- running it -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(
    image: str = f"{IMAGE}:latest",
    port: int = CONTAINER_PORT,
    host: str = "127.0.0.1",
    name: str = "flowsentry",
    timeout_s: float = 180,
) -> str:
    """Run `image` detached as `name`, published on host:port; wait for /readyz.
    Returns the URL. A container that dies or never gets ready is removed, and its
    log is in the error."""
    import httpx

    require_tools("podman", "runc")
    try:
        podman(
            "run", "--detach", "--name", name,
            "--publish", f"{host}:{port}:{CONTAINER_PORT}",
            "--health-interval", "disable",  # no systemd timers here: `podman healthcheck run`
            image,
        )  # fmt: skip
    except FlowsentryError:
        stop(name)  # a container created but not started
        raise
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return url
        state = podman("inspect", "--format", "{{.State.Status}}", name).strip()
        if state != "running" or time.monotonic() > deadline:
            logs = subprocess.run(
                ["podman", "logs", "--tail", "40", name], env=podman_env(),
                capture_output=True, text=True,
            )  # fmt: skip
            stop(name)
            why = f"is {state}" if state != "running" else f"not ready after {timeout_s:.0f} s"
            raise FlowsentryError(
                f"container {name} ({image}) {why}; its log:\n{(logs.stdout + logs.stderr)[-3000:]}"
            )
        time.sleep(1)


def stop(name: str = "flowsentry") -> None:
    """Stop and remove the container `name` (nothing if there is none)."""
    subprocess.run(
        ["podman", "rm", "--force", "--time", "10", name],
        env=podman_env(), capture_output=True, timeout=120,
    )  # fmt: skip


@contextlib.contextmanager
def running(image: str, timeout_s: float = 180) -> Iterator[tuple[str, str]]:
    """A container of `image` on a free loopback port for the block: (url, name)."""
    name = f"flowsentry-{uuid.uuid4().hex[:12]}"
    url = start(image, port=free_port(), name=name, timeout_s=timeout_s)
    try:
        yield url, name
    finally:
        stop(name)
