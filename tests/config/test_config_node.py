"""Node configuration files: the sample loads; every bad file names the file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_node_config

REPO = Path(__file__).resolve().parents[2]

GOOD = """
[node]
listen = "127.0.0.1:8080"
instance = "SH"
catalog = "catalog/shanghai.toml"
keyring = "keyring.dev.toml"
data_dir = "../var"
"""


def test_sample_node_config_loads() -> None:
    cfg = load_node_config(REPO / "configs" / "node.toml")
    assert (cfg.host, cfg.port) == ("127.0.0.1", 8080)
    assert cfg.node.instance == "SH"
    assert cfg.store.backend == "sqlite"
    assert cfg.store.synchronous == "FULL"
    assert cfg.resolve(cfg.node.catalog) == REPO / "configs" / "catalog" / "shanghai.toml"
    assert cfg.resolve(cfg.node.catalog).is_file()
    assert cfg.resolve(cfg.node.data_dir).resolve() == (REPO / "var").resolve()
    assert cfg.resolve(cfg.node.keyring) == REPO / "configs" / "keyring.dev.toml"


def test_sample_node_config_comments_every_key() -> None:
    lines = (REPO / "configs" / "node.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            assert lines[i - 1].lstrip().startswith("#"), f"key without a comment: {line!r}"


def test_minimal_config_takes_defaults(write) -> None:
    cfg = load_node_config(write('[node]\ncatalog = "c.toml"\nkeyring = "k.toml"\n'))
    assert cfg.node.listen == "127.0.0.1:8080"
    assert cfg.limits.max_batch_records == 1000
    assert cfg.store.backend == "sqlite"


# fmt: off
@pytest.mark.parametrize(
    "text, key, reason",
    [
        ('[node]\nkeyring = "k.toml"\n', "node.catalog", "required key is missing"),
        ('[node]\ncatalog = "c.toml"\n', "node.keyring", "required key is missing"),
        ("[store]\nbackend = \"sqlite\"\n", "node", "required key is missing"),
        (GOOD.replace("127.0.0.1:8080", "localhost"), "node.listen", "must be host:port"),
        (GOOD.replace("127.0.0.1:8080", "127.0.0.1:99999"), "node.listen", "must be host:port"),
        (GOOD.replace("127.0.0.1:8080", ":8080"), "node.listen", "must be host:port"),
        (GOOD.replace("127.0.0.1:8080", "127.0.0.1:http"), "node.listen", "must be host:port"),
        (GOOD.replace('"SH"', '"sh/gov"'), "node.instance", "upper-case"),
        (GOOD + 'colour = "blue"\n', "node.colour", "unknown key"),
        ('colour = "blue"\n' + GOOD, "colour", "unknown key"),
        ('source = "/etc"\n' + GOOD, "source", "unknown key"),
        (GOOD + "[store]\nbackend = \"sqlite\"\nfsync = true\n", "store.fsync", "unknown key"),
        (GOOD + "[limits]\nmax_rps = 5\n", "limits.max_rps", "unknown key"),
        (GOOD + "[tls]\ncert = \"x\"\n", "tls", "unknown key"),
        (GOOD.replace('"../var"', "42"), "node.data_dir", "Expected `str`, got `int`"),
        (GOOD + "access_log = \"yes\"\n", "node.access_log", "Expected `bool`, got `str`"),
        (GOOD + "[limits]\nmax_inflight = \"many\"\n", "limits.max_inflight", "Expected `int`, got `str`"),
        (GOOD + "[limits]\nmax_inflight = true\n", "limits.max_inflight", "Expected `int`, got `bool`"),
        (GOOD + "[limits]\nmax_batch_records = 1.5\n", "limits.max_batch_records", "Expected `int`, got `float`"),
        (GOOD + "[store]\nbackend = \"postgres\"\n", "store.backend", "Invalid enum value 'postgres'"),
        (GOOD + "[store]\nsynchronous = \"OFF\"\n", "store.synchronous", "Invalid enum value 'OFF'"),
        (GOOD + 'log_level = "trace"\n', "node.log_level", "Invalid enum value 'trace'"),
        (GOOD + "[store]\nservers = \"nats://a:4222\"\n", "store.servers", "Expected `array`, got `str`"),
        (GOOD + "store = 1\n", "node.store", "unknown key"),
        ("node = \"x\"\n", "node", "Expected `table`, got `str`"),
        (GOOD + "[limits]\nmax_batch_records = 0\n", "limits.max_batch_records", "between 1 and 1000, got 0"),
        (GOOD + "[limits]\nmax_batch_records = 1001\n", "limits.max_batch_records", "between 1 and 1000"),
        (GOOD + "[limits]\nmax_body_bytes = 10\n", "limits.max_body_bytes", "between 1024 and"),
        (GOOD + "[limits]\nmax_inflight = -1\n", "limits.max_inflight", "between 1 and"),
        (GOOD + "[limits]\nclient_timeout_s = 0\n", "limits.client_timeout_s", "between 0.1 and 3600"),
        (GOOD + "[limits]\nclient_timeout_s = nan\n", "limits.client_timeout_s", "between 0.1 and 3600"),
        (GOOD + "[limits]\nshutdown_timeout_s = -1.0\n", "limits.shutdown_timeout_s", "between 0 and 3600"),
        (GOOD + 'tls_cert = "node.crt"\n', "node.tls_cert", "tls_cert and tls_key must be set together"),
        (GOOD + 'tls_key = "node.key"\n', "node.tls_cert", "tls_cert and tls_key must be set together"),
        (GOOD + 'client_ca = "ca.crt"\n', "node.client_ca", "mutual TLS needs tls_cert and tls_key"),
        (GOOD + "[store]\nbackend = \"jetstream\"\nservers = []\n", "store.servers", "at least one nats:// URL"),
        (GOOD + "[store]\nbackend = \"jetstream\"\nservers = [\"http://a:4222\"]\n", "store.servers", "not a nats:// URL"),
        (GOOD + "[store]\nbackend = \"jetstream\"\nreplicas = 2\n", "store.replicas", "must be 1, 3 or 5, got 2"),
        (GOOD + "[store]\nbackend = \"jetstream\"\nreplicas = 0\n", "store.replicas", "must be 1, 3 or 5"),
        (GOOD + "[store]\nbackend = \"jetstream\"\nreplicas = \"3\"\n", "store.replicas", "Expected `int`, got `str`"),
    ],
)
# fmt: on
def test_bad_node_config(write, expect_error, text: str, key: str, reason: str) -> None:
    expect_error(load_node_config, write(text), key, reason)


def test_toml_syntax_error(write, expect_error) -> None:
    err = expect_error(load_node_config, write(GOOD + "[limits\n"), "", "invalid TOML")
    assert "line" in err.reason


def test_duplicate_key_is_a_syntax_error(write, expect_error) -> None:
    expect_error(load_node_config, write(GOOD + 'listen = "127.0.0.1:1"\n'), "", "invalid TOML")


def test_file_not_found(tmp_path: Path, expect_error) -> None:
    expect_error(load_node_config, tmp_path / "nope.toml", "", "file not found")


def test_directory_instead_of_file(tmp_path: Path, expect_error) -> None:
    expect_error(load_node_config, tmp_path, "", "cannot read file")


def test_non_utf8_bytes(write, expect_error) -> None:
    path = write(b'[node]\ncatalog = "caf\xe9.toml"\nkeyring = "k.toml"\n')
    expect_error(load_node_config, path, "", "not UTF-8 text (byte 21)")


def test_tls_pair_and_jetstream_accepted(write) -> None:
    text = GOOD + 'tls_cert = "n.crt"\ntls_key = "n.key"\nclient_ca = "ca.crt"\n'
    text += '[store]\nbackend = "jetstream"\nservers = ["nats://127.0.0.1:4222", "tls://n2:4222"]\nreplicas = 3\n'
    cfg = load_node_config(write(text))
    assert cfg.store.replicas == 3
    assert cfg.node.client_ca == "ca.crt"
