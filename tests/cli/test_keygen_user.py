"""`bjgrid keygen --user`: a private signing key (0600) beside its public line (CliRunner)."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner, Result

from bonjourgrid.app.signing import TrustList, UserPublicKey, load_user_key
from bonjourgrid.cli.main import cli


def run(home: Path, *args: str, **env: str) -> Result:
    full = {"BJGRID_HOME": str(home), "BJGRID_KEY_FILE": None, "BJGRID_USER": None, **env}
    return CliRunner(env=full, catch_exceptions=False).invoke(cli, list(args))


def test_keygen_user_writes_a_private_key_and_prints_the_trust_entry(tmp_path: Path) -> None:
    home = tmp_path / "home"
    res = run(home, "keygen", "--user", "--name", "alice")
    assert res.exit_code == 0, res.output
    key_file = home / "config" / "user.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = load_user_key(key_file)
    assert key.user == "alice"
    pub_line = (home / "config" / "user.pub").read_text().strip()
    assert UserPublicKey.loads(pub_line) == key.public
    assert pub_line in res.output.splitlines()  # pasteable as printed
    assert key.public.fingerprint in res.output
    assert TrustList.parse([pub_line]).find(key.public.fingerprint) is not None
    assert not (home / "config" / "grid.key").exists()  # the grid key is another thing


def test_keygen_user_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(home, "keygen", "--user", "--name", "alice").exit_code == 0
    first = load_user_key(home / "config" / "user.key")
    res = run(home, "keygen", "--user", "--name", "alice")
    assert res.exit_code == 2 and "exists already" in res.output
    assert run(home, "keygen", "--user", "--force", "--name", "bob").exit_code == 0
    second = load_user_key(home / "config" / "user.key")
    assert second != first and second.user == "bob"


def test_keygen_user_name_defaults_from_the_environment_and_output(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "me.key"
    res = run(tmp_path / "home", "keygen", "--user", "-o", str(out), BJGRID_USER="carol")
    assert res.exit_code == 0, res.output
    assert load_user_key(out).user == "carol"
    assert (tmp_path / "keys" / "me.pub").exists()


def test_a_bad_user_name_is_a_clean_error(tmp_path: Path) -> None:
    res = run(tmp_path / "home", "keygen", "--user", "--name", "no spaces please")
    assert res.exit_code == 2 and "user name" in res.output


def test_name_without_user_is_refused(tmp_path: Path) -> None:
    res = run(tmp_path / "home", "keygen", "--name", "alice")
    assert res.exit_code == 2 and "--name goes with --user" in res.output
