"""What a backend needs on the submitting machine, checked before an app is sent anywhere.

The coordinator of an app runs on this host (in its daemon): for ``--backend condor`` it runs
an HTCondor head (collector, negotiator, schedd) and submits jobs through the ``htcondor2``
Python bindings, so both must be here; a missing one used to start the app anyway and fail
every task with ``No module named 'htcondor2'``. The BOINC coordinator is the project server
built into bonjourgrid (pure Python): it needs nothing beyond the base install here, only
``boinc-client`` on the volunteers. ``embedded`` needs nothing.

``missing`` is pure (what is present is passed in); ``probe`` looks at this machine.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

CONDOR_BINDINGS_FIX = "pip install 'bonjourgrid[condor]'"
"""Installs the ``htcondor`` wheel, which provides the ``htcondor2`` module."""
CONDOR_DAEMONS_FIX = (
    "sudo scripts/setup-condor (an HTCondor rootfs, from a bonjourgrid checkout), "
    "or install HTCondor so condor_master is on PATH"
)


@dataclass(frozen=True)
class Present:
    """What this machine has, as far as backends care."""

    htcondor2: bool
    condor_daemons: bool


@dataclass(frozen=True)
class Need:
    """One missing piece and the command that installs it."""

    what: str
    fix: str


def missing(backend: str, here: Present) -> list[Need]:
    """The pieces ``backend``'s coordinator needs that ``here`` lacks (empty: ready)."""
    needs: list[Need] = []
    if backend == "condor":
        if not here.htcondor2:
            needs.append(Need("the htcondor2 Python bindings", CONDOR_BINDINGS_FIX))
        if not here.condor_daemons:
            needs.append(Need("HTCondor's daemons (condor_master)", CONDOR_DAEMONS_FIX))
    return needs


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def probe(backend: str) -> Present:
    """Look at this machine for what ``backend`` may need (nothing is imported or started)."""
    if backend != "condor":
        return Present(htcondor2=False, condor_daemons=False)
    from bonjourgrid.ce_backends.condor.installation import find

    return Present(htcondor2=_has_module("htcondor2"), condor_daemons=find() is not None)


def explain(backend: str, needs: list[Need]) -> str:
    """One message for the user: what is missing and how to install each piece."""
    parts = [f"{n.what} (install: {n.fix})" for n in needs]
    return (
        f"--backend {backend} needs on this machine (the app's coordinator runs here): "
        + "; ".join(parts)
    )
