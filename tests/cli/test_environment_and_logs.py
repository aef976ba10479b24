"""A bad environment value is a clear one-line error (exit 2), not a traceback; the daemon's
log file rotates instead of growing for ever."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from bonjourgrid.cli import context
from bonjourgrid.cli.main import cli


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"BJGRID_PROFILE": "quick"}, "BJGRID_PROFILE='quick': expected 'lan' or 'fast'"),
        ({"BJGRID_TIMING": "suspect_after=soon"}, "expected suspect_after=<seconds>"),
        ({"BJGRID_TIMING": "nope=1"}, "'nope' is not a timing"),
        ({"BJGRID_TIMING": "suspect_after=-1"}, "finite and >= 0"),
    ],
)
def test_bad_environment_is_a_clean_error(env: dict[str, str], says: str, tmp_path: Path) -> None:
    for command in (["status"], ["apps", "--json"], ["submit", str(tmp_path)]):
        result = CliRunner().invoke(cli, command, env={**env, "BJGRID_HOME": str(tmp_path)})
        assert result.exit_code == 2, (command, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert says in result.stderr and "Traceback" not in result.stderr


def test_the_daemon_log_rotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "LOG_BYTES", 2000)
    log_file = tmp_path / "log" / "daemon.log"
    context.setup_logging(1, log_file=log_file)
    try:
        for i in range(400):
            logging.getLogger("bonjourgrid.test").info("line %d %s", i, "x" * 40)
    finally:
        logging.basicConfig(force=True, handlers=[logging.NullHandler()])
    files = sorted(p.name for p in log_file.parent.iterdir())
    assert files == ["daemon.log", *(f"daemon.log.{i}" for i in range(1, context.LOG_BACKUPS + 1))]
    assert all(p.stat().st_size <= 2100 for p in log_file.parent.iterdir())
