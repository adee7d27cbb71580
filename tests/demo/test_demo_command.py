"""`graylane demo` end to end: backends, graylane and the live split, on free ports."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from proxy.testing import free_port


def test_demo_serves_the_split_and_keeps_gray_and_sticky_users() -> None:
    env = dict(os.environ)
    env.update(
        GRAYLANE_DEMO_PORT=str(free_port()),
        GRAYLANE_DEMO_ADMIN_PORT=str(free_port()),
        GRAYLANE_DEMO_V1_PORT=str(free_port()),
        GRAYLANE_DEMO_V2_PORT=str(free_port()),
    )
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "demo", "--duration", "4", "--rate", "100"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    assert f"http://127.0.0.1:{env['GRAYLANE_DEMO_PORT']}" in out
    assert out.count("curl -i") == 3
    line = (
        r"since start: v1 +([\d.]+)% +v2 +([\d.]+)% of (\d+) \| "
        r"gray users off v2: (\d+)  sticky flips: (\d+)"
    )
    lines = re.findall(line, out)
    assert lines, out
    v1_share, v2_share, count, gray_misses, flips = lines[-1]
    assert int(count) > 50
    assert float(v1_share) > float(v2_share) > 0
    assert gray_misses == "0" and flips == "0"
    assert "graylane exited with 0" in out
