"""Request-metadata labels through a real graylane: the JSON header becomes labels that rules
use; a header that cannot be used is ignored (the split serves the request); ``strip`` keeps
the header from the upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from e2e_support import config, get, service, serving, split

from proxy.testing import Backend, GraylaneProcess

pytestmark = pytest.mark.integration

BETA_RULE = {"match": {"labels": {"cohort": {"exact": "beta"}}}, "version": "v2"}


def _proxy(backend, graylane, **metadata):
    v1, v2 = backend("v1"), backend("v2")
    route = {"name": "api", "service": "api", "rules": [BETA_RULE], "split": split(v1=100, v2=0)}
    top = {"metadata": metadata} if metadata else {}
    return v1, v2, graylane(config({"api": service(v1, v2)}, [route], **top))


def test_labels_choose_the_version(backend, graylane):
    v1, v2, proxy = _proxy(backend, graylane)
    beta = json.dumps({"user_id": "42", "cohort": "beta", "region": "eu"})
    for value, version in [(beta, "v2"), (json.dumps({"cohort": "ga"}), "v1"), (json.dumps({}), "v1")]:
        resp = get(proxy, "/", {"X-Request-Metadata": value})
        assert (resp.status, resp.get("X-Backend-Version")) == (200, version), value
    assert get(proxy).get("X-Backend-Version") == "v1"


TOO_BIG = json.dumps({"cohort": "beta", "pad": "x" * 300})  # valid, but over max_bytes (256)
UNUSABLE = {
    "not json": "{cohort: beta",
    "truncated": '{"cohort": "beta"',
    "array": '["cohort", "beta"]',
    "string": '"beta"',
    "number": "42",
    "null": "null",
    "number value": '{"cohort": 1}',
    "list value": '{"cohort": ["beta"]}',
    "object value": '{"cohort": {"name": "beta"}}',
    "empty": "",
    "too big": TOO_BIG,
}


@pytest.fixture(scope="module")
def small_metadata() -> Iterator[GraylaneProcess]:
    """v1 and v2 behind BETA_RULE with a 100/0 split and metadata.max_bytes 256, for the module."""

    def make(backends: dict[str, Backend]) -> str:
        route = {"name": "api", "service": "api", "rules": [BETA_RULE], "split": split(v1=100, v2=0)}
        versions = service(backends["v1"], backends["v2"])
        return config({"api": versions}, [route], metadata={"max_bytes": "256"})

    with serving(make, "v1", "v2") as (_, proxy):
        yield proxy


@pytest.mark.parametrize("value", list(UNUSABLE.values()), ids=list(UNUSABLE))
def test_unusable_metadata_is_ignored_and_the_split_serves(small_metadata, value):
    proxy = small_metadata
    assert len(TOO_BIG) > 256
    for _ in range(3):
        resp = get(proxy, "/", {"X-Request-Metadata": value})
        assert (resp.status, resp.get("X-Backend-Version")) == (200, "v1"), resp.text
    # Still serving, labels still honoured.
    good = get(proxy, "/", {"X-Request-Metadata": json.dumps({"cohort": "beta"})})
    assert good.get("X-Backend-Version") == "v2"
    assert proxy.running
    assert not [line for line in proxy.logs() if "Traceback" in line or "ERROR" in line]


def test_metadata_reaches_the_upstream_unless_stripped(backend, graylane):
    value = json.dumps({"cohort": "beta"})
    v1, v2, proxy = _proxy(backend, graylane)
    assert get(proxy, "/", {"X-Request-Metadata": value}).get("X-Backend-Version") == "v2"
    assert v2.requests[-1].header_values("X-Request-Metadata") == [value]


def test_strip_removes_the_header_upstream_after_routing_on_it(backend, graylane):
    value = json.dumps({"cohort": "beta"})
    v1, v2, proxy = _proxy(backend, graylane, strip=True)
    assert get(proxy, "/", {"X-Request-Metadata": value}).get("X-Backend-Version") == "v2"
    assert get(proxy, "/", {"x-request-metadata": "{bad"}).get("X-Backend-Version") == "v1"
    assert v2.requests[-1].header_values("X-Request-Metadata") == []
    assert v1.requests[-1].header_values("X-Request-Metadata") == []


def test_the_metadata_header_name_is_configurable(backend, graylane):
    v1, v2, proxy = _proxy(backend, graylane, header="X-Labels", strip=True)
    value = json.dumps({"cohort": "beta"})
    assert get(proxy, "/", {"X-Labels": value}).get("X-Backend-Version") == "v2"
    assert get(proxy, "/", {"X-Request-Metadata": value}).get("X-Backend-Version") == "v1"
    assert v2.requests[-1].header_values("X-Labels") == []
    assert v1.requests[-1].header_values("X-Request-Metadata") == [value]  # not the configured one
