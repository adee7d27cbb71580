"""graylane: an HTTP/1.1 reverse proxy and API gateway for gray (canary) releases."""

__version__ = "0.1.0"
