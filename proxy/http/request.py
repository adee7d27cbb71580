"""What the data plane knows about one request once its head has been parsed.

``RequestHead`` is produced by the head parser (``proxy._fast.http1``) and read by
routing; it holds bytes exactly as they came (header names lower-cased, values
stripped of surrounding whitespace).

The class lives in ``proxy._fast.http1`` so that the compiled parser can fill it as
an extension type; this is the form the data plane runs (the extension's class when
it is loaded, else the pure-Python twin's), with the same slots either way.
"""

from __future__ import annotations

from proxy._fast import http1

RequestHead = http1.RequestHead

__all__ = ["RequestHead"]
