"""Reading what `bjgrid submit` printed, for tests: tolerant of both forms of its stdout.

Today `submit --json` prints exactly one JSON object on stdout (DESIGN.md's contract; the
`app <ID>` line goes to stderr); before, the `app <ID>` line came first on stdout and the
object followed. Human mode prints `app <ID>` as the first stdout line. These helpers accept
all three, so a test does not break on the form, only on the content.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

_APP_LINE = re.compile(r"app (\S+)")


def submit_json(stdout: bytes | str) -> dict[str, Any]:
    """The JSON object `bjgrid submit --json` wrote on stdout: the whole stdout, or the
    object starting a line and running to the end (after an `app <ID>` line). ValueError if
    there is none."""
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("{"):
            continue
        with contextlib.suppress(json.JSONDecodeError):
            doc = json.loads("".join(lines[i:]))
            if isinstance(doc, dict):
                return doc
    raise ValueError(f"no JSON object in submit's stdout: {text[-500:]!r}")


def app_id(stdout: bytes | str) -> str:
    """The app id submit printed: from its `app <ID>` first line, else from its JSON
    object's `app`. AssertionError (with the output) when neither is there."""
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout
    first = text.splitlines()[0].strip() if text.strip() else ""
    m = _APP_LINE.fullmatch(first)
    if m:
        return m.group(1)
    try:
        doc = submit_json(text)
    except ValueError:
        raise AssertionError(f"no `app <ID>` line nor JSON object: {text[:300]!r}") from None
    app = doc.get("app")
    assert isinstance(app, str) and app, f"no app id in submit's JSON: {doc!r}"
    return app
