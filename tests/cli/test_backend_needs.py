"""A backend's local needs are checked when an app is submitted: `--backend condor` on a
machine without the htcondor2 bindings (or HTCondor's daemons) exits 2 at once with the
command that installs the missing piece, before any daemon or network is touched."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bonjourgrid.cli import backend_needs
from bonjourgrid.cli.backend_needs import Present, missing
from bonjourgrid.cli.main import cli


def app_dir(tmp_path: Path, backend: str) -> Path:
    d = tmp_path / "app"
    d.mkdir()
    doc = {"name": "n", "backend": backend, "tasks": [{"id": "a", "command": ["true"]}]}
    (d / "app.json").write_text(json.dumps(doc))
    return d


def submit(tmp_path: Path, *args: str) -> Result:
    env = {"BJGRID_HOME": str(tmp_path / "home"), "BJGRID_KEY_FILE": str(tmp_path / "no.key")}
    return CliRunner().invoke(cli, ["submit", *args], catch_exceptions=False, env=env)


def test_condor_needs_the_bindings_and_the_daemons() -> None:
    both = missing("condor", Present(htcondor2=False, condor_daemons=False))
    assert [n.fix for n in both] == [
        backend_needs.CONDOR_BINDINGS_FIX,
        backend_needs.CONDOR_DAEMONS_FIX,
    ]
    assert missing("condor", Present(htcondor2=True, condor_daemons=True)) == []


@pytest.mark.parametrize("backend", ["embedded", "boinc"])
def test_embedded_and_boinc_need_nothing_on_the_submitter(backend: str) -> None:
    """BOINC's project server is built in: only volunteers need boinc-client."""
    assert missing(backend, Present(htcondor2=False, condor_daemons=False)) == []


def test_condor_without_bindings_exits_2_at_once_naming_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "htcondor2", None)  # as if the wheel were not installed
    t0 = time.monotonic()
    result = submit(tmp_path, str(app_dir(tmp_path, "embedded")), "--backend", "condor")
    assert result.exit_code == 2, result.output
    assert time.monotonic() - t0 < 5
    assert "htcondor2" in result.stderr
    assert "pip install 'bonjourgrid[condor]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home").exists()  # no daemon, no state dir made


def test_a_broken_htcondor2_module_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile install: a module object with no spec (a stub left in sys.modules)."""
    stub = type(sys)("htcondor2")
    stub.__spec__ = None
    monkeypatch.setitem(sys.modules, "htcondor2", stub)
    assert backend_needs.probe("condor").htcondor2 is False


def test_boinc_submit_is_not_refused_for_local_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It gets past the check: the next failure is the missing grid key, not a backend."""
    monkeypatch.setitem(sys.modules, "htcondor2", None)
    result = submit(tmp_path, str(app_dir(tmp_path, "boinc")))
    assert "needs on this machine" not in result.stderr
    assert "key" in result.stderr.lower()
