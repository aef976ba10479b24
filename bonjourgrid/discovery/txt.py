"""The grid's TXT records: a versioned, compact codec. Pure: no I/O.

Wire form: DNS-SD key=value strings (RFC 6763 6). Every record carries ``v`` (TXT_VERSION);
keys are one or two letters to stay well under MAX_TXT_BYTES. Keys unknown to this version
are ignored (later versions may only add keys); a record of another version is refused.
No value here changes often (an idle LAN stays silent): ``load`` is a coarse 0..3 bucket.

TXT contents are informative only: nothing that grants authority is taken from them.

``r`` (REVISION_KEY) is added by the publisher, not by these encoders: a number that changes with
every publication, so no two of our announcements or goodbyes are byte-identical. python-zeroconf
drops a packet identical to one it saw less than 0.8 s before; without ``r``, a record published
again within 0.35 s of an identical one (idle -> worker -> idle) would be missed by every peer.
Decoders ignore it.

Volunteer record (``_bjg-idle``/``_bjg-worker``)::

    v=1 g=<grid> n=<node> h=<host> c=<cpus> s=<slots> m=<mem MB> o=<os> a=<arch>
    b=<backend,backend> p=<policy> l=<load 0..3> [ap=<app> co=<coordinator node>]
    [iso=<root|bwrap|unisolated|none> [isr=<why, at most MAX_REASON bytes>]]
    [x-<name>=<value> ...]

``iso`` says how the volunteer isolates tasks (``none``: it refuses them); ``isr`` why it has no
bubblewrap, for ``bjgrid status`` (informative only, like every TXT value).

``x-<name>`` keys carry the volunteer's custom attributes (its config's ``attributes`` table):
names match ATTRIBUTE_NAME, values are 1..MAX_ATTRIBUTE_VALUE bytes without control characters,
at most MAX_ATTRIBUTE_BYTES together. ``clean_attributes`` keeps those that fit and says why the
others were dropped; a decoder skips an ``x-`` key it cannot read rather than the record.

Coordinator record (``_bjg-coord``)::

    v=1 g=<grid> n=<node> h=<host> ap=<app> nm=<app name> u=<user> t=<term>
    [w=<workers held> d=<more workers wanted> wt=<fair-share weight>]

``w``/``d``/``wt`` feed fair share between rival coordinators (coordinator/fairshare.py);
absent, they read as 0, 0 and 1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

TXT_VERSION = 1
MAX_TXT_BYTES = 400
"""Upper bound on the encoded TXT rdata (DESIGN.md: <= 400 bytes; RFC 6763 6.2 prefers 200)."""

MAX_LOAD = 3
ATTRIBUTE_PREFIX = "x-"
ATTRIBUTE_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,15}")
"""A custom attribute's name: lower-case letters, digits and '_', at most 16."""
MAX_ATTRIBUTE_VALUE = 32
"""Bytes (UTF-8) of one attribute value."""
MAX_ATTRIBUTE_BYTES = 120
"""TXT bytes all attributes may take together, so a record stays well under MAX_TXT_BYTES."""
MAX_WEIGHT = 1000
"""Largest fair-share weight an app may claim."""
REVISION_KEY = "r"
MAX_REASON = 80
"""Bytes of the isolation reason ``isr`` (cut, printable ASCII only)."""
_MAX_INT_DIGITS = 12
_DIGITS = re.compile(r"[0-9]+")


class TxtError(ValueError):
    """A TXT record that this version cannot read or write."""


@dataclass(frozen=True)
class NodeTxt:
    """A volunteer's record. ``app``/``coordinator`` are set for a worker only."""

    grid: str
    node: str
    host: str
    cpus: int
    slots: int
    mem_mb: int
    os: str
    arch: str
    backends: tuple[str, ...]
    policy: str = "ok"
    load: int = 0
    app: str | None = None
    coordinator: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    """Custom attributes, sorted by name (see ``clean_attributes``)."""
    isolation: str = ""
    """How tasks are isolated (``root``, ``bwrap``, ``unisolated``, ``none``); "" unsaid."""
    isolation_reason: str = ""
    """Why there is no bubblewrap (``unisolated``, ``none``)."""


@dataclass(frozen=True)
class CoordTxt:
    """A coordinator record: one per app a daemon coordinates. ``term`` is informative."""

    grid: str
    node: str
    host: str
    app: str
    name: str
    user: str
    term: int
    workers: int = 0
    """Workers the app holds now (fair share; informative)."""
    demand: int = 0
    """More workers the app could use now."""
    weight: int = 1
    """The app's fair-share weight (app.json ``weight``)."""


# --- size -------------------------------------------------------------------------------


def txt_size(props: Mapping[str, str]) -> int:
    """Bytes of the TXT rdata that ``props`` encodes to (one length byte per string)."""
    return sum(1 + len(f"{k}={v}".encode()) for k, v in props.items())


def _raw_size(props: Mapping[bytes, bytes | None]) -> int:
    return sum(1 + len(k) + (0 if v is None else 1 + len(v)) for k, v in props.items())


# --- encoding ---------------------------------------------------------------------------


def _text(key: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise TxtError(f"{key}: expected a non-empty string, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        raise TxtError(f"{key}: {value!r} is not encodable as UTF-8") from None
    return value


def _int(key: str, value: int, hi: int | None = None) -> str:
    # bool is an int subclass; refuse it so True never travels as "1" by accident.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TxtError(f"{key}: expected a non-negative integer, got {value!r}")
    if hi is not None and value > hi:
        raise TxtError(f"{key}: {value} is above {hi}")
    text = str(value)
    if len(text) > _MAX_INT_DIGITS:
        raise TxtError(f"{key}: {value} is too large")
    return text


def _checked(props: dict[str, str]) -> dict[str, str]:
    size = txt_size(props)
    if size > MAX_TXT_BYTES:
        raise TxtError(f"TXT record of {size} bytes exceeds {MAX_TXT_BYTES}")
    return props


def encode_node(t: NodeTxt) -> dict[str, str]:
    """TXT properties of a volunteer record. Raises TxtError if a field is unusable."""
    for backend in t.backends:
        if "," in _text("b", backend):
            raise TxtError(f"b: backend name {backend!r} contains ','")
    if t.app is None and t.coordinator is not None:
        raise TxtError("co: only a worker (with an app) names a coordinator")
    props = {
        "v": str(TXT_VERSION),
        "g": _text("g", t.grid),
        "n": _text("n", t.node),
        "h": _text("h", t.host),
        "c": _int("c", t.cpus),
        "s": _int("s", t.slots),
        "m": _int("m", t.mem_mb),
        "o": _text("o", t.os),
        "a": _text("a", t.arch),
        "b": ",".join(t.backends),
        "p": _text("p", t.policy),
        "l": _int("l", t.load, MAX_LOAD),
    }
    if t.app is not None:
        props["ap"] = _text("ap", t.app)
    if t.coordinator is not None:
        props["co"] = _text("co", t.coordinator)
    if t.isolation:
        props["iso"] = _text("iso", t.isolation)
        if t.isolation_reason:
            props["isr"] = short_reason(t.isolation_reason)
    kept, dropped = clean_attributes(dict(t.attributes))
    if dropped:
        raise TxtError(f"attributes: {'; '.join(dropped)}")
    props.update({ATTRIBUTE_PREFIX + k: v for k, v in kept})
    return _checked(props)


def short_reason(text: str) -> str:
    """``text`` as printable ASCII of at most MAX_REASON bytes (never empty)."""
    clean = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return (clean if len(clean) <= MAX_REASON else clean[: MAX_REASON - 3] + "...") or "?"


def _attribute_problem(name: object, value: object) -> str | None:
    if not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name):
        return f"{name!r}: a name is a-z, 0-9 and '_' (at most 16, not starting with '_')"
    if not isinstance(value, str) or not value:
        return f"{name}: the value must be a non-empty string, not {value!r}"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return f"{name}: the value contains control characters"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{name}: the value is not encodable as UTF-8"
    if size > MAX_ATTRIBUTE_VALUE:
        return f"{name}: the value is longer than {MAX_ATTRIBUTE_VALUE} bytes"
    return None


def clean_attributes(
    attrs: Mapping[str, object],
) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """The attributes that can travel in a TXT record (sorted by name) and, for each one left
    out, why: a bad name or value, or beyond MAX_ATTRIBUTE_BYTES together."""
    kept: list[tuple[str, str]] = []
    dropped: list[str] = []
    used = 0
    for name, value in sorted(attrs.items()):
        problem = _attribute_problem(name, value)
        if problem is not None:
            dropped.append(problem)
            continue
        assert isinstance(name, str) and isinstance(value, str)
        size = txt_size({ATTRIBUTE_PREFIX + name: value})
        if used + size > MAX_ATTRIBUTE_BYTES:
            dropped.append(f"{name}: beyond the {MAX_ATTRIBUTE_BYTES}-byte budget of attributes")
            continue
        used += size
        kept.append((name, value))
    return tuple(kept), dropped


def encode_coord(t: CoordTxt) -> dict[str, str]:
    """TXT properties of a coordinator record. Raises TxtError if a field is unusable."""
    props = {
        "v": str(TXT_VERSION),
        "g": _text("g", t.grid),
        "n": _text("n", t.node),
        "h": _text("h", t.host),
        "ap": _text("ap", t.app),
        "nm": _text("nm", t.name),
        "u": _text("u", t.user),
        "t": _int("t", t.term),
    }
    if t.workers or t.demand or t.weight != 1:
        props["w"] = _int("w", t.workers)
        props["d"] = _int("d", t.demand)
        props["wt"] = _int("wt", t.weight, MAX_WEIGHT)
        if t.weight < 1:
            raise TxtError(f"wt: {t.weight} is below 1")
    return _checked(props)


def with_revision(props: dict[str, str], revision: int) -> dict[str, str]:
    """``props`` plus the publication revision ``r``. Raises TxtError if it no longer fits."""
    return _checked({**props, REVISION_KEY: _int(REVISION_KEY, revision)})


# --- decoding ---------------------------------------------------------------------------


def _decoded(props: Mapping[bytes, bytes | None]) -> dict[str, str | None]:
    """Checks size and version and decodes keys and values as UTF-8."""
    size = _raw_size(props)
    if size > MAX_TXT_BYTES:
        raise TxtError(f"TXT record of {size} bytes exceeds {MAX_TXT_BYTES}")
    out: dict[str, str | None] = {}
    try:
        for k, v in props.items():
            out[k.decode("utf-8")] = None if v is None else v.decode("utf-8")
    except UnicodeDecodeError:
        raise TxtError("TXT record is not UTF-8") from None
    version = out.get("v")
    if version is None:
        raise TxtError("TXT record has no version 'v'")
    if version != str(TXT_VERSION):
        raise TxtError(f"TXT version {version!r} is not {TXT_VERSION}")
    return out


def _get_text(d: Mapping[str, str | None], key: str) -> str:
    value = d.get(key)
    if not value:
        raise TxtError(f"TXT record lacks {key!r}")
    return value


def _get_opt(d: Mapping[str, str | None], key: str) -> str | None:
    if key not in d:
        return None
    return _get_text(d, key)


def _get_int(d: Mapping[str, str | None], key: str, hi: int | None = None) -> int:
    value = _get_text(d, key)
    # ASCII digits only: int() would also accept '+1', ' 1', '1_0' and non-ASCII digits.
    if len(value) > _MAX_INT_DIGITS or not _DIGITS.fullmatch(value):
        raise TxtError(f"{key}: {value!r} is not a non-negative integer")
    number = int(value)
    if hi is not None and number > hi:
        raise TxtError(f"{key}: {number} is above {hi}")
    return number


def decode_node(props: Mapping[bytes, bytes | None]) -> NodeTxt:
    """The volunteer record in ``props`` (as zeroconf gives them). Raises TxtError."""
    d = _decoded(props)
    backends_text = d.get("b")
    if backends_text is None:
        raise TxtError("TXT record lacks 'b'")
    backends = tuple(backends_text.split(",")) if backends_text else ()
    if any(not b for b in backends):
        raise TxtError(f"b: malformed backend list {backends_text!r}")
    app = _get_opt(d, "ap")
    coordinator = _get_opt(d, "co")
    if app is None and coordinator is not None:
        raise TxtError("co: only a worker (with an app) names a coordinator")
    return NodeTxt(
        grid=_get_text(d, "g"),
        node=_get_text(d, "n"),
        host=_get_text(d, "h"),
        cpus=_get_int(d, "c"),
        slots=_get_int(d, "s"),
        mem_mb=_get_int(d, "m"),
        os=_get_text(d, "o"),
        arch=_get_text(d, "a"),
        backends=backends,
        policy=_get_text(d, "p"),
        load=_get_int(d, "l", MAX_LOAD),
        app=app,
        coordinator=coordinator,
        attributes=_read_attributes(d),
        isolation=short_reason(d.get("iso") or "")[:16] if d.get("iso") else "",
        isolation_reason=short_reason(d.get("isr") or "") if d.get("isr") else "",
    )


def _read_attributes(d: Mapping[str, str | None]) -> tuple[tuple[str, str], ...]:
    """The ``x-`` keys that read as attributes; unreadable ones are skipped, not fatal."""
    n = len(ATTRIBUTE_PREFIX)
    found = {k[n:]: v for k, v in d.items() if k.startswith(ATTRIBUTE_PREFIX) and v is not None}
    return tuple((k, v) for k, v in sorted(found.items()) if _attribute_problem(k, v) is None)


def _get_count(d: Mapping[str, str | None], key: str, default: int) -> int:
    return default if key not in d else _get_int(d, key)


def decode_coord(props: Mapping[bytes, bytes | None]) -> CoordTxt:
    """The coordinator record in ``props`` (as zeroconf gives them). Raises TxtError."""
    d = _decoded(props)
    return CoordTxt(
        grid=_get_text(d, "g"),
        node=_get_text(d, "n"),
        host=_get_text(d, "h"),
        app=_get_text(d, "ap"),
        name=_get_text(d, "nm"),
        user=_get_text(d, "u"),
        term=_get_int(d, "t"),
        workers=_get_count(d, "w", 0),
        demand=_get_count(d, "d", 0),
        weight=min(max(_get_count(d, "wt", 1), 1), MAX_WEIGHT),
    )
