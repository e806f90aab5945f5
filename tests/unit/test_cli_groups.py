"""The command groups users type: `flowsentry registry ...` and `flowsentry experiment ...`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import yaml
from typer.testing import CliRunner

from flowsentry.cli import app
from flowsentry.registry import store

runner = CliRunner()


def _saved(tiny_encoder, target, f1):
    shutil.copytree(tiny_encoder, target)
    metadata = {"kind": "sft", "mode": "full", "features": ["runtime"], "workflows": ["tiny"]}
    (target / "flowsentry.json").write_text(json.dumps(metadata))
    return store.register(target, {"f1": f1}, {"seed": 1})


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_registry_list_promote_and_rollback(bento_home, tiny_encoder, tmp_path):
    first = _saved(tiny_encoder, tmp_path / "a", 0.81)
    second = _saved(tiny_encoder, tmp_path / "b", 0.86)
    assert runner.invoke(app, ["registry", "promote", first]).exit_code == 0
    done = runner.invoke(app, ["registry", "promote", second])
    assert done.exit_code == 0 and done.output.strip() == f"champion: {second}"

    listed = _lines(runner.invoke(app, ["registry", "list"]).output)
    assert len(listed) == 2
    marked = {line[2:].split()[0]: line.startswith("*") for line in listed}
    assert marked == {first: False, second: True}
    assert "f1=0.86" in next(line for line in listed if second in line)

    done = runner.invoke(app, ["registry", "rollback"])
    assert done.exit_code == 0 and done.output.strip() == f"champion: {first}"
    assert store.champion_tag() == first
    done = runner.invoke(app, ["registry", "rollback"])  # nothing earlier than the first
    assert done.exit_code == 1 and len(_lines(done.output)) == 1
    assert "no earlier champion" in done.output and "Traceback" not in done.output
    assert store.champion_tag() == first  # a refused rollback changes nothing


def test_promoting_an_unknown_tag_is_one_line_and_changes_nothing(
    bento_home, tiny_encoder, tmp_path
):
    first = _saved(tiny_encoder, tmp_path / "a", 0.8)
    store.promote(first)
    done = runner.invoke(app, ["registry", "promote", "flowsentry-detector:nosuchversion"])
    assert done.exit_code == 1 and len(_lines(done.output)) == 1
    assert "not in the BentoML store" in done.output
    assert store.champion_tag() == first


def test_experiment_debias_from_the_command_line(make_flowbench, project, tiny_encoder, tmp_path):
    cfg = project(train={"model": str(tiny_encoder), "epochs": 1, "batch_size": 16})
    root = make_flowbench("wfa", n_runs=30)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
    args = ["experiment", "debias", "--workflow", "wfa", "--n-train", "100", "--n-test", "30"]
    done = runner.invoke(app, [*args, "--flowbench-dir", str(root), "--params", str(params)])
    assert done.exit_code == 0, done.output
    saved = json.loads((cfg.paths.reports / "experiments" / "debias_wfa.json").read_text())
    printed = json.loads(done.stdout)  # stdout holds the result alone (logs: stderr)
    assert printed == saved
    assert set(saved) >= {"without_augmentation", "with_augmentation"}

    missing = runner.invoke(
        app,
        [*args[:3], "nosuchflow", *args[4:], "--flowbench-dir", str(root), "--params", str(params)],
    )
    assert missing.exit_code == 1 and "nosuchflow" in missing.output
    assert "Traceback" not in missing.output


def test_a_temporary_prefect_server_sends_no_telemetry(monkeypatch):
    """Its telemetry row raced the flow for the temporary server's SQLite database and
    printed a harmless `database is locked` traceback; a user's own choice wins."""
    from flowsentry.cli.orchestration import quiet_temporary_server

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    quiet_temporary_server()
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    # What Prefect makes of it, in a fresh process as the command line starts one.
    probe = (
        "from flowsentry.cli.orchestration import quiet_temporary_server as q; q(); "
        "from prefect.settings import get_current_settings as s; "
        "print(s().server.analytics_enabled)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, timeout=120, check=True)  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "False"
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "true")
    quiet_temporary_server()
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED")
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    quiet_temporary_server()
    assert "PREFECT_SERVER_ANALYTICS_ENABLED" not in os.environ
