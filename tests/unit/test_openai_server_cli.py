"""``slmkit serve``'s checks that come before any model loads: the key on a reachable host, the knowledge base, the
port."""

from __future__ import annotations

import socket

import pytest

from slmkit.agent.serve import bind, exposure_error, is_loopback, run_server
from slmkit.cli import EXIT_ERROR, EXIT_USAGE, build_parser, main
from slmkit.core.errors import ConfigurationError, ServerStartError


def test_serve_options_and_defaults():
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.kb, args.model_name) == ("127.0.0.1", 8000, "default", "slmkit")
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "9001", "--kb", "docs", "--api-key", "k"])
    assert (args.host, args.port, args.kb, args.api_key) == ("0.0.0.0", 9001, "docs", "k")


def test_serve_without_a_knowledge_base_says_how_to_make_one(tmp_path, capsys):
    assert main(["serve", "--path", str(tmp_path), "--kb", "papers", "--port", "0"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "no knowledge base 'papers'" in err
    assert "slmkit ingest PATH --kb papers" in err


def test_a_taken_port_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServerStartError, match=f"Cannot listen on 127.0.0.1:{port}.*another --port"):
            bind("127.0.0.1", port)


def test_port_zero_picks_a_free_port():
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


# -- a server safe to expose -----------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.20", "example.org"])
def test_a_reachable_host_without_a_key_is_refused_before_anything_loads(tmp_path, capsys, monkeypatch, host):
    monkeypatch.delenv("SLMKIT_API_KEY", raising=False)
    # no knowledge base exists: a refusal that came after opening one would say so instead
    assert main(["serve", "--path", str(tmp_path), "--host", host, "--port", "0"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--api-key" in err
    assert "--insecure-no-api-key" in err
    assert "no knowledge base" not in err
    assert not (tmp_path / "default").exists()


@pytest.mark.parametrize("flags", [["--api-key", "k"], ["--insecure-no-api-key"]])
def test_a_reachable_host_with_a_key_or_the_explicit_opt_out_gets_past_the_check(tmp_path, capsys, monkeypatch, flags):
    monkeypatch.delenv("SLMKIT_API_KEY", raising=False)
    assert main(["serve", "--path", str(tmp_path), "--host", "0.0.0.0", "--port", "0", *flags]) == EXIT_ERROR
    assert "no knowledge base" in capsys.readouterr().err  # the next check: the key check passed


def test_the_key_may_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SLMKIT_API_KEY", "from-env")
    assert build_parser().parse_args(["serve"]).api_key == "from-env"
    assert exposure_error("0.0.0.0", "from-env") is None


def test_an_empty_key_is_a_usage_error(tmp_path, capsys):
    assert main(["serve", "--path", str(tmp_path), "--api-key", ""]) == EXIT_USAGE
    assert "--api-key (or $SLMKIT_API_KEY) is empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("myhost.local", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_run_server_refuses_a_reachable_socket_without_a_key():
    sock = bind("0.0.0.0", 0)
    try:
        with pytest.raises(ConfigurationError, match="--api-key"):
            run_server(object(), sock=sock)  # type: ignore[arg-type]
    finally:
        sock.close()


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "eighty", "80.5", ""])
def test_an_invalid_port_is_a_usage_error(port, capsys):
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", port])
    assert info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "argument --port" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("port", ["0", "1", "8000", "65535"])
def test_valid_ports(port):
    assert build_parser().parse_args(["serve", "--port", port]).port == int(port)


def test_serve_takes_a_remote_model_and_a_cascade(tmp_path, capsys):
    args = build_parser().parse_args(
        ["serve", "--remote-url", "http://127.0.0.1:8080/v1", "--remote-model", "big", "--escalate-below", "auto"]
    )
    assert (args.remote_url, args.remote_model, args.escalate_below) == ("http://127.0.0.1:8080/v1", "big", "auto")
    # checked before the knowledge base or any model
    assert main(["serve", "--path", str(tmp_path), "--kb", "papers", "--escalate-below", "0.2"]) == EXIT_ERROR
    assert "--escalate-below needs a model to escalate to: give --remote-url as well." in capsys.readouterr().err
