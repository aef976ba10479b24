"""`bjgrid keygen` and how every command finds the grid key (click's CliRunner, no network).

Lookup order: ``--key-file``, then ``BJGRID_KEY_FILE``, then ``<config dir>/grid.key``.
``keygen`` writes to the looked-up path, and a command that needs the key names the path it
looked at when the key is missing, so both prove which path won. No test here ever gives a
network command a valid key; a guard fails the test if one would start a daemon anyway.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bonjourgrid.cli import daemon_client, join
from bonjourgrid.cli.main import cli
from bonjourgrid.gridkey import GridKey, load_key, write_key


class _NoDaemon:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a CLI test must not start a bjgrid daemon (network)")


@pytest.fixture(autouse=True)
def _no_network_and_clean_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forbid daemons (a real one would open mDNS in this namespace); undo the commands'
    logging set-up, which points the root logger at CliRunner's short-lived streams."""
    monkeypatch.setattr(daemon_client, "NodeDaemon", _NoDaemon)
    monkeypatch.setattr(join, "NodeDaemon", _NoDaemon)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def run(home: Path, *args: str, env: Mapping[str, str | None] | None = None) -> Result:
    """``bjgrid ARGS`` with BJGRID_HOME=home and no BJGRID_KEY_FILE unless ``env`` sets one."""
    full: dict[str, str | None] = {"BJGRID_HOME": str(home), "BJGRID_KEY_FILE": None}
    full.update(env or {})
    return CliRunner(env=full, catch_exceptions=False).invoke(cli, list(args))


def default_key(home: Path) -> Path:
    return home / "config" / "grid.key"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- keygen -------------------------------------------------------------------------------------


def test_keygen_writes_a_0600_key_at_the_default_path_and_prints_its_grid_id(home: Path) -> None:
    r = run(home, "keygen")
    assert r.exit_code == 0, r.stderr
    key = load_key(default_key(home))
    assert mode(default_key(home)) == 0o600
    assert key.grid_id in r.stdout
    # Whitespace dropped: rich wraps long paths at 80 columns when stdout is not a terminal.
    assert str(default_key(home)) in "".join(r.stdout.split())


def test_keygen_refuses_to_overwrite_without_force(home: Path) -> None:
    assert run(home, "keygen").exit_code == 0
    before = default_key(home).read_text()

    r = run(home, "keygen")
    assert r.exit_code == 2
    assert "--force" in r.stderr and str(default_key(home)) in r.stderr
    assert "Traceback" not in r.output + r.stderr
    assert default_key(home).read_text() == before

    r = run(home, "keygen", "--force")
    assert r.exit_code == 0, r.stderr
    assert default_key(home).read_text() != before
    assert mode(default_key(home)) == 0o600


def test_keygen_output_writes_the_given_path_only(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "keys" / "lab.key"
    r = run(home, "keygen", "--output", str(out))
    assert r.exit_code == 0, r.stderr
    assert load_key(out).grid_id in r.stdout
    assert mode(out) == 0o600
    assert not default_key(home).exists()


def test_two_keygens_make_different_grids(home: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    assert run(home, "keygen", "-o", str(a)).exit_code == 0
    assert run(home, "keygen", "-o", str(b)).exit_code == 0
    assert load_key(a).grid_id != load_key(b).grid_id


# --- key lookup order ---------------------------------------------------------------------------


def test_keygen_writes_where_the_lookup_points_key_file_over_env_over_default(
    home: Path, tmp_path: Path
) -> None:
    opt, env = tmp_path / "opt.key", tmp_path / "env.key"

    r = run(home, "--key-file", str(opt), "keygen", env={"BJGRID_KEY_FILE": str(env)})
    assert r.exit_code == 0, r.stderr
    assert opt.exists() and not env.exists() and not default_key(home).exists()

    r = run(home, "keygen", env={"BJGRID_KEY_FILE": str(env)})
    assert r.exit_code == 0, r.stderr
    assert env.exists() and not default_key(home).exists()


def test_key_file_option_wins_over_env_and_default(home: Path, tmp_path: Path) -> None:
    write_key(GridKey.generate(), default_key(home))
    present, missing = tmp_path / "env.key", tmp_path / "opt-missing.key"
    write_key(GridKey.generate(), present)

    r = run(home, "--key-file", str(missing), "status", env={"BJGRID_KEY_FILE": str(present)})
    assert r.exit_code == 2
    assert f"no grid key at {missing}" in r.stderr


def test_env_key_file_wins_over_default(home: Path, tmp_path: Path) -> None:
    write_key(GridKey.generate(), default_key(home))
    missing = tmp_path / "env-missing.key"

    r = run(home, "status", env={"BJGRID_KEY_FILE": str(missing)})
    assert r.exit_code == 2
    assert f"no grid key at {missing}" in r.stderr


def test_default_key_path_is_used_when_neither_option_nor_env_is_set(home: Path) -> None:
    r = run(home, "status")
    assert r.exit_code == 2
    assert f"no grid key at {default_key(home)}" in r.stderr


# --- missing or bad key -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("status",), ("status", "--json"), ("join", "--slots", "1")],
    ids=["status", "status-json", "join"],
)
def test_missing_key_is_a_clear_error_naming_keygen_with_exit_2(
    home: Path, args: tuple[str, ...]
) -> None:
    r = run(home, *args)
    assert r.exit_code == 2
    assert "bjgrid keygen" in r.stderr
    assert "Traceback" not in r.output + r.stderr
    assert r.stdout == ""


def test_malformed_key_file_is_a_clear_error_with_exit_2(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    r = run(home, "--key-file", str(bad), "status")
    assert r.exit_code == 2
    assert str(bad) in r.stderr and "not a bjgrid key file" in r.stderr
    assert "Traceback" not in r.output + r.stderr
