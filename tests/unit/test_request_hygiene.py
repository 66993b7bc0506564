"""The gate's checks on raw requests, without a server: the nesting-depth pre-scan and the exact
Host/Origin comparison."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.jsonrpc import json_nesting_exceeds
from mahavishnu.platform.origin import HostOriginGuard


def depth(value: Any) -> int:
    """The reference: how deep a parsed document nests arrays and objects."""
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


tricky_text = st.text(alphabet='[]{}"\\ab', max_size=12)
documents = st.recursive(
    st.none() | st.integers() | tricky_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(document=documents, limit=st.integers(2, 12), indent=st.sampled_from([None, 1]))
def test_the_prescan_agrees_with_a_parser_on_well_formed_json(
    document: Any, limit: int, indent: int | None
) -> None:
    body = json.dumps(document, indent=indent, ensure_ascii=False).encode()
    assert json_nesting_exceeds(body, limit) == (depth(document) > limit)


@pytest.mark.parametrize(
    ("body", "exceeds"),
    [
        (b"[" * 65 + b"]" * 65, True),
        (b"[" * 64 + b"]" * 64, False),
        (b"[" * 100_000, True),  # never closed: a parser would still recurse into it
        (b'{"a":' * 65 + b"1" + b"}" * 65, True),
        (b'["' + b"[" * 1000 + b'"]', False),  # brackets in a string are text
        (b'["\\"' + b"[" * 1000 + b'"]', False),  # ...after an escaped quote too
        (b'["\\\\"' + b",[" * 100 + b"]" * 100 + b"]", True),  # an escaped backslash ends no string
        (b"[" * 40 + b"[]," * 10_000 + b"]" * 40, False),  # long but shallow
        (b"]" * 1000 + b"[" * 10, False),
    ],
)
def test_the_prescan_on_hostile_shapes(body: bytes, exceeds: bool) -> None:
    assert json_nesting_exceeds(body, 64) is exceeds


def guard() -> HostOriginGuard:
    return HostOriginGuard.with_loopback(["mcp.example.com", "proxy:*"], ["https://app.example.com"])


@pytest.mark.parametrize(
    ("host", "admitted"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1:8680", True),
        ("LOCALHOST:1", True),
        ("[::1]:8680", True),
        ("mcp.example.com", True),
        ("mcp.example.com:443", False),  # listed without a port: only without one
        ("proxy:8080", True),
        ("proxy", False),
        ("127.0.0.1:8680.evil.com", False),
        ("127.0.0.1.evil.com", False),
        ("127.0.0.1:", False),
        ("127.0.0.1:*", False),  # a wildcard is for the configuration, not the header
        ("127.0.0.1:70000", False),
        ("[::1]x", False),
        ("user@127.0.0.1", False),
        ("", False),
    ],
)
def test_hosts_are_parsed_and_compared_whole(host: str, admitted: bool) -> None:
    assert guard()._admits_host(host) is admitted


@pytest.mark.parametrize(
    ("origin", "admitted"),
    [
        ("http://127.0.0.1:8680", True),
        ("http://localhost:3000", True),
        ("https://app.example.com", True),
        ("https://app.example.com:8443", False),
        ("http://app.example.com", False),
        ("http://127.0.0.1:8680.evil.com", False),
        ("http://127.0.0.1", False),
        ("https://127.0.0.1:8680", False),
        ("http://127.0.0.1:8680/", False),
        ("null", False),
    ],
)
def test_origins_are_parsed_and_compared_whole(origin: str, admitted: bool) -> None:
    assert guard()._admits_origin(origin) is admitted


@pytest.mark.parametrize(
    ("hosts", "origins"),
    [(["*.example.com"], []), (["a:b:c"], []), ([], ["example.com"]), ([], ["https://x/path"])],
)
def test_unusable_patterns_refuse_to_start(hosts: list[str], origins: list[str]) -> None:
    with pytest.raises(ConfigurationError):
        HostOriginGuard(allowed_hosts=hosts, allowed_origins=origins)
