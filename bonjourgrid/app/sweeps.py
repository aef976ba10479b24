"""Parameter sweeps: Cartesian products of parameter values and `{param}` substitution.

Substitution follows Python `str.format` rules (`{{`/`}}` are literal braces, format specs
such as `{i:03d}` and conversions such as `{s!r}` work), restricted to named parameters: no
positional `{}`/`{0}`, no attribute or index access. In a shell command string every
substituted value is quoted with `shlex.quote`, so a value never splits into words or runs
as shell syntax.
"""

from __future__ import annotations

import itertools
import re
import shlex
import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

Scalar = str | int | float | bool
"""A sweep parameter value."""

PARAM_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
"""Parameter names are identifiers, so `{name}` is never mistaken for index/attribute access."""


class SweepError(ValueError):
    """A template string cannot be expanded; the message is the problem, without location."""


class _ParamFormatter(string.Formatter):
    def __init__(self, params: Mapping[str, Scalar], *, quote: bool) -> None:
        super().__init__()
        self._params = params
        self._quote = quote

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if field_name not in self._params:
            raise SweepError(_unknown(field_name, self._params))
        return self._params[field_name], field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        try:
            text = format(value, format_spec)
        except (ValueError, TypeError) as exc:
            raise SweepError(f"bad format spec {format_spec!r} for {value!r}: {exc}") from None
        return shlex.quote(text) if self._quote else text


def _unknown(field_name: str, params: Mapping[str, Scalar]) -> str:
    known = ", ".join(params) or "none"
    return f"unknown placeholder '{{{field_name}}}' (parameters: {known})"


def expand_text(template: str, params: Mapping[str, Scalar], *, quote: bool = False) -> str:
    """`template` with every `{param}` replaced; `quote` shell-quotes each substituted value.

    Raises SweepError for an unknown placeholder or a malformed format string.
    """
    formatter = _ParamFormatter(params, quote=quote)
    try:
        for _literal, field_name, _spec, _conv in formatter.parse(template):
            if field_name is not None and field_name not in params:
                raise SweepError(_unknown(field_name, params))
        return formatter.vformat(template, (), dict(params))
    except SweepError:
        raise
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
        raise SweepError(f"bad format string {template!r}: {exc}") from None


def combinations(params: Mapping[str, Sequence[Scalar]]) -> Iterator[dict[str, Scalar]]:
    """Every combination of parameter values, in declaration order; the last name varies fastest."""
    names = list(params)
    for values in itertools.product(*(params[n] for n in names)):
        yield dict(zip(names, values, strict=True))


def describe(combo: Mapping[str, Scalar]) -> str:
    """A short human label for one combination, e.g. `i=3, s='a'`."""
    return ", ".join(f"{k}={v!r}" for k, v in combo.items())
