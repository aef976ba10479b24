"""What a volunteer accepts: an app of a first Reserve, and each RunTask of it.

The volunteer agent (volunteer_agent.py) asks these two questions; the answers are pure
functions of the message, the volunteer's trust list and the spec it accepted, so they are
tested without a channel (tests/daemon/test_volunteer_trust.py).

* :func:`admit`: the app's signature (where ``trusted_users`` is set it must be there, be
  version 2 and bind this app id) and its spec; returns the spec tasks are checked against
  and the CE key that proves every reservation of it.
* :func:`task_problem`: a RunTask must be the spec's task exactly (app/task_check.py), and
  its inputs only declared outputs of the task's predecessors (names read, bounded, before
  anything is unpacked).
"""

from __future__ import annotations

from bonjourgrid.app.ce_key import CEKeyError, public_from_hex
from bonjourgrid.app.signing import (
    AppSignature,
    SignatureRefused,
    SigningError,
    TrustList,
    verify_app,
)
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.app.task_check import InputsError, input_names, inputs_problem, runtask_matches
from bonjourgrid.ce_backends.embedded.sandbox_config import SandboxConfig
from bonjourgrid.control.messages import Reserve, RunTask

_MB = 2**20


def admit(first: Reserve, trusted: TrustList | None) -> tuple[str, AppSpec | None, bytes | None]:
    """(why the app is refused, or ""; the spec its tasks are checked against; the CE public
    key its reservations must be proven with: the signed one for a signed app, the one the
    Reserve names for an unsigned app — accepted only where ``trusted`` is None)."""
    try:
        sig = AppSignature.decode(first.signature) if first.signature else None
        verify_app(sig, first.app, first.bundle_sha256, first.spec, trusted)
    except SignatureRefused as e:
        return f"signature refused: {e.reason}", None, None
    except SigningError as e:
        return f"signature refused: {e}", None, None
    try:
        spec = AppSpec.from_json(first.spec)
    except Exception as e:  # hostile input: any failure to read the spec is a refusal
        return f"the app's spec is not valid: {e}", None, None
    if sig is not None:
        return "", spec, sig.ce_key
    try:
        return "", spec, public_from_hex(first.ce_key)
    except CEKeyError as e:
        return f"no usable CE key for the unsigned app: {e}", None, None


def task_problem(spec: AppSpec, msg: RunTask, sandbox: SandboxConfig) -> str | None:
    """Why ``msg`` may not run (None: it is ``spec``'s task exactly as the spec says, with
    inputs that are only its predecessors' declared outputs). Reads the inputs' member names
    (bounded by the sandbox's unpack caps): call it off the event loop."""
    why = runtask_matches(spec, msg)
    if why or not msg.inputs:
        return why
    try:
        names = input_names(
            msg.inputs,
            max_bytes=sandbox.max_unpack_mb * _MB,
            max_members=sandbox.max_unpack_files,
        )
    except InputsError as e:
        return str(e)
    return inputs_problem(spec, msg.task, names)
