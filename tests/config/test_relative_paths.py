"""Relative file names in a config are relative to the config file's directory, not the working
directory: JWT key files, the access log, the rollout state directory (TLS: test_config_load).

Each test writes the config and its files under ``tmp_path/etc`` and loads it from another
directory. The key material is generated here, with the policy tests' ``KeyPair``.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.config import load_config
from proxy.config.schema import Config, Jwt
from proxy.errors import ConfigError

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "policy"))
from policy_support import KeyPair  # noqa: E402


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return KeyPair(ec.generate_private_key(ec.SECP256R1()), "ec-1")


@pytest.fixture
def etc(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """The config's directory; the working directory is elsewhere (an empty sibling)."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return tmp_path / "etc"


def _write_keys(etc: pathlib.Path, key: KeyPair) -> None:
    (etc / "keys").mkdir()
    (etc / "keys" / "signer.pem").write_bytes(key.public_pem)
    (etc / "keys" / "jwks.json").write_text(json.dumps({"keys": [key.jwk("ES256")]}))


def _config(etc: pathlib.Path, jwt: dict[str, Any], **top: Any) -> str:
    doc = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:8080"}],
        "services": {"api": {"versions": {"v1": {"endpoints": ["127.0.0.1:9101"]}}}},
        "routes": [{"name": "api", "service": "api", "auth": {"jwt": {"algorithms": ["ES256"], **jwt}}}],
        **top,
    }
    path = etc / "graylane.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def _jwt(config: Config) -> Jwt:
    auth = config.routes[0].auth
    assert auth is not None
    return auth.jwt


def test_relative_names_become_absolute_under_the_config_dir(etc: pathlib.Path, key: KeyPair) -> None:
    _write_keys(etc, key)
    path = _config(
        etc,
        {"public_keys": ["keys/signer.pem", "./keys/signer.pem"], "jwks_file": "keys/jwks.json"},
        access_log={"path": "logs/access.log"},
        rollouts={"state_dir": "state"},
    )
    config = load_config(path)
    jwt = _jwt(config)
    assert jwt.public_keys == [
        os.path.join(etc, "keys/signer.pem"),
        os.path.join(etc, "./keys/signer.pem"),
    ]
    assert jwt.jwks_file == os.path.join(etc, "keys/jwks.json")
    assert config.access_log.path == os.path.join(etc, "logs/access.log")
    assert config.rollouts.state_dir == os.path.join(etc, "state")
    for name in [*jwt.public_keys, jwt.jwks_file]:
        assert name is not None and os.path.isabs(name) and os.path.isfile(name)


def test_the_same_config_loads_equal_from_its_own_dir(etc: pathlib.Path, key: KeyPair) -> None:
    _write_keys(etc, key)
    path = _config(etc, {"public_keys": ["keys/signer.pem"], "jwks_file": "keys/jwks.json"})
    elsewhere = load_config(path)
    os.chdir(etc)  # monkeypatch (in ``etc``) puts the working directory back
    assert load_config("graylane.yaml") == elsewhere


@pytest.mark.parametrize(
    ("jwt", "field", "missing"),
    [
        ({"public_keys": ["keys/signer.pem", "keys/gone.pem"]}, "public_keys[1]", "keys/gone.pem"),
        ({"jwks_file": "gone/jwks.json"}, "jwks_file", "gone/jwks.json"),
    ],
)
def test_a_missing_relative_key_file_is_reported_where_it_was_looked_for(
    etc: pathlib.Path, key: KeyPair, jwt: dict[str, Any], field: str, missing: str
) -> None:
    _write_keys(etc, key)
    # The working directory has a file of that name: it must not be the one found.
    cwd = pathlib.Path.cwd()
    (cwd / missing).parent.mkdir(parents=True)
    (cwd / missing).write_bytes(key.public_pem)
    path = _config(etc, jwt)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: routes[0].auth.jwt.{field}: cannot read ")
    assert repr(os.path.join(etc, missing)) in problem
    assert "No such file or directory" in problem


def test_a_bad_relative_key_file_is_reported(etc: pathlib.Path, key: KeyPair) -> None:
    _write_keys(etc, key)
    (etc / "keys" / "junk.pem").write_text("not a key\n")
    path = _config(etc, {"public_keys": ["keys/junk.pem"]})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: routes[0].auth.jwt.public_keys[0]: ")
    assert "not a PEM public key" in problem


def test_absolute_names_are_unchanged(etc: pathlib.Path, tmp_path: pathlib.Path, key: KeyPair) -> None:
    keys = tmp_path / "abs-keys"
    keys.mkdir()
    (keys / "signer.pem").write_bytes(key.public_pem)
    (keys / "jwks.json").write_text(json.dumps({"keys": [key.jwk("ES256")]}))
    pem, jwks, log, state = (
        str(keys / "signer.pem"),
        str(keys / "jwks.json"),
        str(tmp_path / "access.log"),
        str(tmp_path / "state"),
    )
    path = _config(
        etc,
        {"public_keys": [pem], "jwks_file": jwks},
        access_log={"path": log},
        rollouts={"state_dir": state},
    )
    config = load_config(path)
    assert (_jwt(config).public_keys, _jwt(config).jwks_file) == ([pem], jwks)
    assert (config.access_log.path, config.rollouts.state_dir) == (log, state)


def test_interpolated_absolute_names_are_unchanged(
    etc: pathlib.Path, tmp_path: pathlib.Path, key: KeyPair
) -> None:
    keys = tmp_path / "abs-keys"
    keys.mkdir()
    (keys / "signer.pem").write_bytes(key.public_pem)
    path = _config(
        etc,
        {"public_keys": ["${KEYS}/signer.pem"]},
        access_log={"path": "${LOGS}/access.log"},
    )
    config = load_config(path, env={"KEYS": str(keys), "LOGS": str(tmp_path)})
    assert _jwt(config).public_keys == [str(keys / "signer.pem")]
    assert config.access_log.path == str(tmp_path / "access.log")


@pytest.mark.parametrize("log", [None, "-"])
def test_standard_output_is_not_a_file_name(etc: pathlib.Path, key: KeyPair, log: str | None) -> None:
    _write_keys(etc, key)
    path = _config(etc, {"public_keys": ["keys/signer.pem"]}, access_log={"path": log})
    assert load_config(path).access_log.path == log


def test_defaults_are_unchanged(etc: pathlib.Path, key: KeyPair) -> None:
    _write_keys(etc, key)
    config = load_config(_config(etc, {"jwks_file": "keys/jwks.json"}))
    assert config.access_log.path is None
    assert config.rollouts.state_dir == "/var/lib/graylane"
