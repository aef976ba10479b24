"""What every command shares: paths, the grid key, the timing profile, logging, and the one
object that owns terminal output and aborts (exit statuses per DESIGN.md's contract)."""

from __future__ import annotations

import functools
import logging
import logging.handlers
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from bonjourgrid.config import Config
from bonjourgrid.gridkey import GridKey, KeyError_, find_key_file, load_key
from bonjourgrid.paths import Paths, default_paths

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK = 0
EXIT_TASKS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_GRID_FAILED = 3
EXIT_NOT_FOUND = 4
EXIT_INTERRUPTED = 130

LOG_BYTES = 5 * 1024 * 1024
"""Size at which the daemon's log file is rotated."""
LOG_BACKUPS = 4
"""Rotated log files kept beside the current one (``daemon.log.1`` ... ``.4``)."""


class Abort(click.ClickException):
    """A clean, traceback-free exit with a message on stderr and a contract exit status."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code

    @property  # click reads ``exit_code``; it is a class variable there (click >= 8.5)
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code

    def show(self, file: object = None) -> None:
        click.echo(f"bjgrid: {self.format_message()}", err=True)


@dataclass
class Ctx:
    key_file_option: str | None
    verbose: int
    paths: Paths = field(default_factory=default_paths)
    config: Config = field(default_factory=Config.from_env)

    # rich is imported on first use: `bjgrid join` (a daemon for months) never prints with it.
    @functools.cached_property
    def out(self) -> Console:
        from rich.console import Console

        return Console(highlight=False, soft_wrap=True)

    @functools.cached_property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False)

    @property
    def key_file(self) -> Path:
        return find_key_file(self.key_file_option, self.paths.default_key_file)

    def key(self) -> GridKey:
        try:
            return load_key(self.key_file)
        except KeyError_ as e:
            raise Abort(str(e), EXIT_BAD_INPUT) from None

    def fail(self, message: str, code: int) -> NoReturn:
        raise Abort(message, code)


def setup_logging(verbose: int, *, log_file: Path | None = None) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # Rotated: a volunteer runs for months (5 files of LOG_BYTES at most).
        fh = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS
        )
        fh.setLevel(logging.INFO)
        handlers.append(fh)
    logging.basicConfig(
        level=min(level, logging.INFO) if log_file else level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    handlers[0].setLevel(level)


pass_ctx = click.make_pass_decorator(Ctx)
