"""``source_digest``: what an extension of proxy/_fast was built from, as one SHA-256.

Standard library only: setup.py loads this file by its path (the package's dependencies may
not be installed while it builds), and proxy._fast compares the digest an extension records
with the sources beside it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def source_digest(directory: Path, name: str) -> str:
    """SHA-256 of ``name``.py and of every .pxd in ``directory`` (sorted by name).

    Every .pxd counts, not only the module's own: an extension that cimports another's types
    was compiled against that one's layout.
    """
    digest = hashlib.sha256((directory / f"{name}.py").read_bytes())
    for pxd in sorted(directory.glob("*.pxd")):
        digest.update(b"\0" + pxd.name.encode() + b"\0" + pxd.read_bytes())
    return digest.hexdigest()
