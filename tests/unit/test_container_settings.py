"""What the container build decides without podman: pip settings, requirements, names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsentry.deploy import container
from flowsentry.errors import FlowsentryError
from flowsentry.models import kinds

FEATURE_KINDS = kinds.names(language_model=False)
PYOD_KINDS = ("ecod", "copod", "hbos")

LISTING = """\
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/somewhere/else'
"""


def _conf(settings: container.PipSettings) -> dict[str, str]:
    lines = settings.conf.rstrip("\n").split("\n")
    assert lines[0] == "[global]"
    return dict(line.split(" = ", 1) for line in lines[1:])


def test_the_hosts_index_settings_are_carried_and_local_folders_mounted(tmp_path):
    wheels, simple = tmp_path / "wheels", tmp_path / "pypi" / "simple"
    wheels.mkdir()
    simple.mkdir(parents=True)
    listing = (
        f"global.find-links='{tmp_path / 'gone'}'\n"
        f"global.extra-index-url='file://{simple} https://example.org/simple'\n"
        "global.constraint='/etc/xdg/pip/constraints.txt'\n"
        f":env:.find-links='{wheels}'\n"
    )
    settings = container.pip_settings(listing, {"PIP_INDEX_URL": "https://mirror.example/simple"})
    conf = _conf(settings)
    assert conf["find-links"] == str(wheels)  # the environment overrides the files
    assert conf["extra-index-url"] == f"file://{simple} https://example.org/simple"
    assert conf["index-url"] == "https://mirror.example/simple"
    assert "constraint" not in conf  # the image is constrained by the project's lock
    assert sorted(settings.mounts) == [simple, wheels]  # existing local folders, once each


def test_no_settings_means_pips_defaults():
    conf = _conf(container.pip_settings("", {}))
    assert not {"index-url", "extra-index-url", "find-links"} & set(conf)


ENV_KEYS = [f"PIP_{key.upper().replace('-', '_')}" for key in container.PIP_KEYS]


@given(st.text(max_size=300), st.dictionaries(st.sampled_from(ENV_KEYS), st.text(max_size=40)))
def test_any_listing_gives_a_pip_conf_or_nothing_at_all(listing, environ):
    settings = container.pip_settings(listing, environ)
    conf = _conf(settings)
    assert set(conf) <= {*container.PIP_KEYS, "disable-pip-version-check", "no-input", "cert"}
    assert all("\n" not in value for value in conf.values())
    assert all(isinstance(path, Path) and path.is_absolute() for path in settings.mounts)


@pytest.mark.parametrize("kind", FEATURE_KINDS)
def test_a_tree_champion_serves_without_the_language_stack(kind):
    assert "torch" not in container.requirements_for(kind)
    assert {"bentoml", "scikit-learn", "skops"} <= set(container.requirements_for(kind))
    assert ("pyod" in container.requirements_for(kind)) == (kind in PYOD_KINDS)


def test_a_language_champion_gets_what_its_runtime_needs():
    onnx = set(container.requirements_for("sft", {"engine": "onnxruntime", "int8": True}))
    assert {"onnxruntime", "transformers"} <= onnx and "torch" not in onnx
    for kind in ("sft", "icl"):  # torch weights (an sft saved before ONNX, a decoder)
        assert {"torch", "transformers", "peft"} <= set(container.requirements_for(kind))


def test_the_base_image_is_named_by_its_recipe():
    assert container.base_tag() == container.base_tag()
    assert container.base_tag("trixie") != container.base_tag()
    assert container.base_tag(packages=("python3",)) != container.base_tag()


def test_missing_tools_are_named_with_the_packages_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FlowsentryError, match="apt-get install -y podman runc"):
        container.require_tools("podman", "runc")


def test_the_containerfile_and_podman_settings_ship_with_the_package():
    assert "HEALTHCHECK" in container.CONTAINERFILE.read_text()
    assert 'runtime = "runc"' in container.CONTAINERS_CONF.read_text()


SERVICE_IMPORT_CHECK = """
import importlib.metadata as md, re, sys
from flowsentry.deploy.container import requirements_for

def name(requirement):
    first = re.split(r"[\\s\\[<>=!~;(]", requirement.strip(), maxsplit=1)[0]
    return first.lower().replace("_", "-")

allowed, todo = set(), [name(r) for r in requirements_for(sys.argv[1])]
while todo:
    dist = todo.pop()
    if dist in allowed:
        continue
    allowed.add(dist)
    try:
        requires = md.requires(dist) or []
    except md.PackageNotFoundError:
        continue
    todo += [name(r) for r in requires if "extra ==" not in r]
blocked = {
    module for module, dists in md.packages_distributions().items()
    if not any(d.lower().replace("_", "-") in allowed for d in dists)
}

class Block:
    def find_spec(self, fullname, path=None, target=None):
        top = fullname.split(".")[0]
        if top in blocked and top != "flowsentry":  # the Bento carries flowsentry's source
            raise ModuleNotFoundError(f"{fullname} is not a serving requirement of {sys.argv[1]}")

sys.meta_path.insert(0, Block())
import flowsentry.serving.service  # noqa: F401
"""


@pytest.mark.parametrize("kind", ["gradient_boosting", "ecod"])
def test_the_service_imports_with_only_its_serving_requirements(kind):
    """The image installs requirements_for(kind) and nothing else: the service module and
    everything it imports must load from those packages (and their dependencies) alone."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", SERVICE_IMPORT_CHECK, kind], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
