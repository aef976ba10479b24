"""The request proof `bjgrid results` and `bjgrid cancel` send for a signed app
(app/request_proof.py): made here, where the user's key can be read, for the daemon that
carries the request."""

from __future__ import annotations

import time
from pathlib import Path

import click

from bonjourgrid.app.request_proof import make_proof
from bonjourgrid.app.signing import SigningError, load_user_key, user_key_path

from .context import EXIT_BAD_INPUT, Abort, Ctx
from .daemon_client import DaemonSession

sign_key_option = click.option(
    "--sign-key",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="BJGRID_USER_KEY",
    help="Prove with this user key that you submitted the app (default: user.key from "
    "`bjgrid keygen --user`, if it exists). A signed app's holders answer only its submitter.",
)


def carrier_node(ctx: Ctx, session: DaemonSession) -> str:
    """The node id of the daemon that will carry the request: this host's, which a running
    daemon mirrors in its state dir's ``node-id`` (the daemon checks the proof names it)."""
    if session.private is not None:
        return session.private.host.node_id
    try:
        return ctx.paths.node_id_file.read_text().strip()
    except OSError as e:
        raise Abort(f"cannot read this host's node id: {e}", EXIT_BAD_INPUT) from None


def request_proof(
    ctx: Ctx, session: DaemonSession, action: str, app_id: str, key_file: Path | None
) -> str:
    """The encoded proof, or "" when the user has no key and named none (enough for an
    unsigned app; a signed app's holders will say the proof is missing)."""
    path = key_file or user_key_path(ctx.paths.config_dir)
    if key_file is None and not path.exists():
        return ""
    try:
        key = load_user_key(path)
    except SigningError as e:
        raise Abort(str(e), EXIT_BAD_INPUT) from None
    return make_proof(key, action, app_id, carrier_node(ctx, session), now=time.time()).encode()
