"""Request-metadata labels: parsed from one JSON header, ignored (and counted) when bad."""

from __future__ import annotations

import pytest

from proxy.config.schema import Metadata
from proxy.routing import RouteTable
from proxy.routing.metadata import LabelParser
from proxy.routing.stats import RoutingStats

IP = "10.9.9.9"


def parser(**settings) -> LabelParser:
    return LabelParser(Metadata(**settings), RoutingStats())


def test_labels_from_the_header(make_request):
    p = parser()
    req = make_request(b"/", headers=[(b"x-request-metadata", b'{"tenant": "acme", "region": "eu"}')])
    assert p(req) == {"tenant": "acme", "region": "eu"}
    assert p(make_request(b"/")) is None
    assert p.stats.metadata_invalid == 0


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b'["a"]', b'"a"', b"1", b'{"a": 1}', b'{"a": {"b": "c"}}', b'{"a": null}', b"\xff"],
)
def test_bad_metadata_is_ignored_and_counted(make_request, raw):
    p = parser()
    assert p(make_request(b"/", headers=[(b"x-request-metadata", raw)])) is None
    assert (p.stats.metadata_invalid, p.stats.metadata_too_large) == (1, 0)


def test_too_large_metadata_is_ignored_and_counted(make_request):
    p = parser(max_bytes=20)
    small = b'{"a": "b"}'
    large = b'{"a": "' + b"x" * 20 + b'"}'
    assert p(make_request(b"/", headers=[(b"x-request-metadata", small)])) == {"a": "b"}
    assert p(make_request(b"/", headers=[(b"x-request-metadata", large)])) is None
    assert (p.stats.metadata_invalid, p.stats.metadata_too_large) == (1, 1)


def test_header_name_is_configurable(make_request):
    p = parser(header="X-Labels")
    assert p(make_request(b"/", headers=[(b"x-labels", b'{"a": "b"}')])) == {"a": "b"}
    assert p(make_request(b"/", headers=[(b"x-request-metadata", b'{"a": "b"}')])) is None


def label_table(make_config) -> RouteTable:
    routes = [
        {"name": "eu", "service": "shop", "match": {"labels": {"region": {"exact": "eu"}}}},
        {"name": "rest", "service": "shop"},
    ]
    return RouteTable(make_config(routes))


def test_routing_by_label(make_config, make_request):
    table = label_table(make_config)
    eu = make_request(b"/", headers=[(b"x-request-metadata", b'{"region": "eu", "tier": "gold"}')])
    us = make_request(b"/", headers=[(b"x-request-metadata", b'{"region": "us"}')])
    decision = table.decide(eu, IP)
    assert decision.route_name == "eu"
    assert decision.labels == {"region": "eu", "tier": "gold"}
    assert table.decide(us, IP).route_name == "rest"
    assert table.decide(make_request(b"/"), IP).labels is None
    assert table.uses_labels
    assert b"x-request-metadata" in table.header_names


def test_invalid_metadata_routes_as_if_absent_and_is_counted(make_config, make_request):
    table = label_table(make_config)
    for raw in (b'{"region": 5}', b"{oops", b'["eu"]'):
        decision = table.decide(make_request(b"/", headers=[(b"x-request-metadata", raw)]), IP)
        assert decision.route_name == "rest"
        assert decision.labels is None
    assert table.stats.metadata_invalid == 3


def test_metadata_is_parsed_once_per_request(make_config, make_request, monkeypatch):
    routes = [
        {"name": "a", "service": "shop", "match": {"labels": {"x": {"exact": "1"}}}},
        {"name": "b", "service": "shop", "match": {"labels": {"x": {"exact": "2"}}}},
        {
            "name": "c",
            "service": "shop",
            "rules": [{"match": {"labels": {"y": {"present": True}}}, "version": "v2"}],
        },
    ]
    table = RouteTable(make_config(routes))
    calls = []
    parse = LabelParser.parse
    monkeypatch.setattr(LabelParser, "parse", lambda self, raw: calls.append(raw) or parse(self, raw))
    decision = table.decide(
        make_request(b"/", headers=[(b"x-request-metadata", b'{"x": "3", "y": "z"}')]), IP
    )
    assert (decision.route_name, decision.version_name) == ("c", "v2")
    assert len(calls) == 1


def test_labels_are_not_read_when_no_route_uses_them(make_config, make_request):
    table = RouteTable(make_config())
    decision = table.decide(make_request(b"/", headers=[(b"x-request-metadata", b"{bad")]), IP)
    assert decision.labels is None
    assert table.stats.metadata_invalid == 0
    assert not table.uses_labels
