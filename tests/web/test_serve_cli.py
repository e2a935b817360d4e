"""`autofix serve`: loopback by default, the token URL printed once, and the real server answering to it only."""

from __future__ import annotations

import socket

import httpx
import pytest
from typer.testing import CliRunner

from autofix.cli import app
from autofix.web import AddressRefused, BindError, bind, check_host

runner = CliRunner()


def test_loopback_addresses_pass_and_others_need_allow_remote() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert check_host(host, allow_remote=False), host
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.com"):
        with pytest.raises(AddressRefused, match="--allow-remote"):
            check_host(host, allow_remote=False)
        assert check_host(host, allow_remote=True) is False


def test_port_zero_picks_a_free_port_and_a_taken_one_is_an_error() -> None:
    bound = bind("127.0.0.1", 0)
    try:
        assert bound.port > 0 and bound.loopback
        assert bound.url("tok") == f"http://127.0.0.1:{bound.port}/?token=tok"
        with pytest.raises(BindError, match=f"127.0.0.1:{bound.port}.*--port"):
            bind("127.0.0.1", bound.port)
    finally:
        bound.sock.close()


def test_a_remote_host_is_refused_without_allow_remote(target) -> None:
    result = runner.invoke(app, ["serve", "-c", str(target.config_file), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "not a loopback address" in result.output and "--allow-remote" in result.output


def test_the_served_page_needs_the_printed_token(target, serve) -> None:
    server = serve(target.config_file)
    info = server.info
    assert info["host"] == "127.0.0.1" and info["project"] == "tiny" and info["pending"] == 2
    token = info["url"].split("?token=", 1)[1]
    assert info["url"] == f"http://127.0.0.1:{info['port']}/?token={token}" and len(token) >= 40
    assert httpx.get(server.base + "/").status_code == 401
    assert httpx.get(server.base + "/?token=" + "x" * len(token)).status_code == 403
    with httpx.Client() as client:
        page = client.get(info["url"], follow_redirects=True)
        assert page.status_code == 200 and "p-0001" in page.text and "p-0002" in page.text
        assert str(page.url) == server.base + "/"  # the token left the address
        assert client.get(server.base + "/proposals/p-0001").status_code == 200
    with socket.create_connection(("127.0.0.1", info["port"])) as sock:  # DNS rebinding: another Host is refused
        sock.sendall(f"GET /?token={token} HTTP/1.1\r\nHost: evil.example:{info['port']}\r\n"
                     f"Connection: close\r\n\r\n".encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 400")
    out, err = server.stop()
    assert token not in out + err  # printed once, in the JSON line only; no access log
    assert server.proc.returncode == 0


def test_allow_remote_serves_with_a_warning(target, serve) -> None:
    server = serve(target.config_file, "--host", "0.0.0.0", "--allow-remote")
    token = server.url.split("?token=", 1)[1]
    assert server.info["host"] == "0.0.0.0" and f":{server.info['port']}/?token=" in server.url
    assert httpx.get(f"http://127.0.0.1:{server.info['port']}/?token={token}", follow_redirects=True).status_code == 200
    _, err = server.stop()
    assert "reachable from other machines" in err
