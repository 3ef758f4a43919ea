"""``slmkit serve``'s checks that come before any model loads: the knowledge base and the port."""

from __future__ import annotations

import socket

import pytest

from slmkit.agent.serve import bind
from slmkit.cli import EXIT_ERROR, build_parser, main
from slmkit.core.errors import ServerStartError


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
