"""No module of the package grows past ~500 lines (STYLE.md: one concept per file); a module
that does is split along its seam, not allowed to grow."""

from __future__ import annotations

from pathlib import Path

import bonjourgrid

LIMIT = 500


def test_no_module_of_the_package_is_over_the_line_limit() -> None:
    root = Path(bonjourgrid.__file__).parent
    long = {
        str(p.relative_to(root)): n
        for p in sorted(root.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > LIMIT
    }
    assert not long, f"modules over {LIMIT} lines (split them): {long}"
