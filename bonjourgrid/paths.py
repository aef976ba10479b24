"""Where config, state and logs live: the platform's usual directories (platformdirs).

``BJGRID_HOME`` puts all three under one folder; the virtual LAN gives every namespace host
its own home this way, as separate machines would have.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

HOME_ENV = "BJGRID_HOME"
APP_NAME = "bonjourgrid"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    state_dir: Path
    log_dir: Path

    @property
    def default_key_file(self) -> Path:
        return self.config_dir / "grid.key"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "volunteer.toml"

    @property
    def daemon_socket(self) -> Path:
        return self.state_dir / "daemon.sock"

    @property
    def daemon_lock(self) -> Path:
        return self.state_dir / "daemon.lock"

    @property
    def node_id_file(self) -> Path:
        return self.state_dir / "node-id"

    @property
    def work_dir(self) -> Path:
        return self.state_dir / "work"

    @property
    def apps_dir(self) -> Path:
        return self.state_dir / "apps"

    def ensure(self) -> Paths:
        for d in (self.config_dir, self.state_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self


def default_paths() -> Paths:
    home = os.environ.get(HOME_ENV)
    if home:
        base = Path(home)
        return Paths(base / "config", base / "state", base / "log")
    return Paths(
        Path(platformdirs.user_config_dir(APP_NAME)),
        Path(platformdirs.user_state_dir(APP_NAME)),
        Path(platformdirs.user_log_dir(APP_NAME)),
    )
