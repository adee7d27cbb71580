"""``host:port`` strings of listeners and endpoints.

Accepted hosts: an IPv4 address, a bracketed IPv6 address (``[::1]:80``) or a DNS
name. The host comes back without brackets, ready for ``socket`` calls.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")


class HostPort(NamedTuple):
    host: str
    port: int


def _check_name(host: str) -> None:
    if host.replace(".", "").isdigit():  # looks like IPv4: no name has an all-digit last label
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv4 address") from None
        return
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.removesuffix(".").split(".")):
        raise ValueError(f"{host!r} is not an IP address or a host name")


def parse_host_port(text: str, *, allow_port_zero: bool = False) -> HostPort:
    """``"127.0.0.1:8080"`` -> ``HostPort("127.0.0.1", 8080)``; ValueError says what is wrong."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r} is not [IPv6]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r} has no port (write host:port)")
        if ":" in host:
            raise ValueError(f"{text!r}: an IPv6 address needs brackets, e.g. [::1]:8080")
        if not host:
            raise ValueError(f"{text!r} has no host (e.g. 0.0.0.0{text} for every interface)")
        _check_name(host)
    lowest = 0 if allow_port_zero else 1
    if not (port.isascii() and port.isdigit()) or not lowest <= int(port) <= 65535:
        raise ValueError(f"{text!r}: port must be a number from {lowest} to 65535")
    return HostPort(host, int(port))
