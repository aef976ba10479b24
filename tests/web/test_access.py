"""Token and Host checks, and --web-listen parsing."""

from __future__ import annotations

import pytest

from bonjourgrid.web import hook
from bonjourgrid.web.access import Access, lan_host, loopback_host
from bonjourgrid.web.hook import new_token, parse_listen
from bonjourgrid.web.http import HttpError, Request


def req(host: str = "127.0.0.1:1", token: str | None = None, auth: str = "") -> Request:
    headers = {"host": host}
    if auth:
        headers["authorization"] = auth
    return Request("GET", "/", {"token": token} if token is not None else {}, headers)


def test_the_token_opens_the_view() -> None:
    a = Access(new_token(), loopback_only=True)
    a.check(req(token=a.token))
    a.check(req(auth=f"Bearer {a.token}"))


@pytest.mark.parametrize("given", [None, "", "x", "é", "A" * 5000])
def test_a_missing_or_wrong_token_is_401(given: str | None) -> None:
    a = Access(new_token(), loopback_only=False)
    with pytest.raises(HttpError) as e:
        a.check(req(token=given))
    assert e.value.status == 401


def test_a_near_miss_token_is_401() -> None:
    a = Access(new_token(), loopback_only=False)
    with pytest.raises(HttpError):
        a.check(req(token=a.token[:-1] + ("A" if a.token[-1] != "A" else "B")))


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8080", "localhost:1", "[::1]:80", "[::1]", "LOCALHOST"]
)
def test_loopback_hosts(host: str) -> None:
    assert loopback_host(host)


@pytest.mark.parametrize(
    "host",
    ["evil.example:8080", "", "10.0.0.1:80", "127.0.0.1.evil.com", "[::1]x", "localhost:x",
     "localhost.evil", "::1", "[::1]:80:90"],
)  # fmt: skip
def test_rebound_hosts_are_not_loopback(host: str) -> None:
    assert not loopback_host(host)


def test_loopback_only_refuses_another_host_before_the_token() -> None:
    a = Access(new_token(), loopback_only=True)
    with pytest.raises(HttpError) as e:
        a.check(req(host="attacker.example:8000", token=a.token))
    assert e.value.status == 421
    shared = Access(a.token, loopback_only=False, names=frozenset({"lab-pc", "lab-pc.local"}))
    shared.check(req(host="lab-pc.local:8000", token=a.token))
    shared.check(req(host="10.0.0.7:8000", token=a.token))
    shared.check(req(host="[fe80::1]:8000", token=a.token))
    with pytest.raises(HttpError) as e:  # DNS rebinding of a LAN-shared view
        shared.check(req(host="attacker.example:8000", token=a.token))
    assert e.value.status == 421


def test_lan_hosts() -> None:
    names = frozenset({"pc1", "pc1.local"})
    assert lan_host("PC1.local.:80", names) and lan_host("192.168.1.4", names)
    assert not lan_host("pc1.local.evil", names) and not lan_host("", names)
    assert not lan_host("10.0.0.1:x", names)


def test_the_reader_limit_is_the_head_limit() -> None:
    from bonjourgrid.web import http

    assert hook.HEAD_LIMIT == http.MAX_HEAD


@pytest.mark.parametrize(
    ("value", "want"),
    [("127.0.0.1", ("127.0.0.1", 0)), ("0.0.0.0:8470", ("0.0.0.0", 8470)),
     ("[::1]:9", ("::1", 9)), ("::", ("::", 0)), (":8000", ("127.0.0.1", 8000)),
     ("localhost", ("localhost", 0))],
)  # fmt: skip
def test_listen_values(value: str, want: tuple[str, int]) -> None:
    assert parse_listen(value) == want


@pytest.mark.parametrize("value", ["", "lab-pc", "1.2.3.4:99999", "1.2.3.4:x", "[::1", "[::1]9"])
def test_bad_listen_values(value: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(value)
