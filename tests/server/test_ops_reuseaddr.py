"""`kame serve`'s socket (kame.server.ops.listen_socket) shares no port in use: SO_REUSEADDR only
where asyncio sets it (POSIX: a restart binds while the old connections close); on Windows, where
it lets a second server bind a port in use, so "address in use" never came, none, and
SO_EXCLUSIVEADDRUSE where the system has it."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace

from kame.server import ops


def _system(monkeypatch, name):
    """ops sees os.name ``name`` (only ops: pathlib and pytest would take "nt" for Windows too)."""
    monkeypatch.setattr(ops, "os", SimpleNamespace(**{**vars(os), "name": name}), raising=False)


def _opt(sock, name):
    return sock.getsockopt(socket.SOL_SOCKET, name)


def test_posix_reuses_the_address_as_asyncio_does(monkeypatch):
    _system(monkeypatch, "posix")
    with ops.listen_socket("127.0.0.1", 0) as sock:
        assert _opt(sock, socket.SO_REUSEADDR)


def test_windows_does_not_share_a_port_in_use(monkeypatch):
    _system(monkeypatch, "nt")
    monkeypatch.delattr(socket, "SO_EXCLUSIVEADDRUSE", raising=False)
    with ops.listen_socket("127.0.0.1", 0) as sock:
        assert not _opt(sock, socket.SO_REUSEADDR)
    # Windows' SO_EXCLUSIVEADDRUSE, played by an option Linux has, is set where the system has it
    monkeypatch.setattr(socket, "SO_EXCLUSIVEADDRUSE", socket.SO_KEEPALIVE, raising=False)
    with ops.listen_socket("127.0.0.1", 0) as sock:
        assert _opt(sock, socket.SO_KEEPALIVE) and not _opt(sock, socket.SO_REUSEADDR)
