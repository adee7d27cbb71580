"""Every example config in conf/ loads, validates and compiles (``graylane check``)."""

from __future__ import annotations

import pathlib

import pytest

from proxy.cli import main

CONF = pathlib.Path(__file__).parents[2] / "conf"
EXAMPLES = sorted(p for p in CONF.iterdir() if p.suffix in (".yaml", ".yml", ".toml", ".json"))


def test_there_are_examples() -> None:
    assert CONF / "basic.yaml" in EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_check(example: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["check", "-c", str(example)])
    captured = capsys.readouterr()
    assert (status, captured.err) == (0, ""), captured.err
    assert captured.out == "configuration OK\n"
