"""A hub that accepts connections but never answers (a firewall dropping packets): kame.hub
probes it once, then uses the local cache only for hub.UNREACHABLE_TTL_S (was: one timeout per
file, so a load of 4 cached files took 30-40 s). No real network: a local socket that accepts and
never answers, or a stand-in for huggingface_hub's probe."""

import logging
import socket
import threading

import pytest

from kame import hub
from kame.hub import HubUnreachable, hf_download

from .test_hub import _cache_file, _online_against


class _Clock:
    """Stands in for the ``time`` module in kame.hub: ``monotonic()`` is ``now``, set by the test."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture()
def silent_hub():
    """(URL of a server that accepts connections and never answers, the list of its connections)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    conns: list[socket.socket] = []

    def accept():
        while True:
            try:
                conns.append(server.accept()[0])
            except OSError:  # closed
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", conns
    server.close()
    for c in conns:
        c.close()


def _quiet_online_against(monkeypatch, tmp_path, url):
    """_online_against ``url``, probes timing out after 0.3 s, nothing remembered from other tests,
    and no telemetry (huggingface_hub's once-a-process user-agent look-up would be a connection too)."""
    import huggingface_hub.constants as hc

    _online_against(monkeypatch, tmp_path, url)
    monkeypatch.setattr(hc, "HF_HUB_ETAG_TIMEOUT", 0.3)
    monkeypatch.setattr(hc, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(hub, "_unreachable", {}, raising=False)  # (done by _online_against too)


def test_a_silent_hub_is_probed_once_then_the_cache_is_used(tmp_path, monkeypatch, caplog, silent_hub):
    url, conns = silent_hub
    _quiet_online_against(monkeypatch, tmp_path, url)
    a = _cache_file(tmp_path / "hub", "org/repo", "a.safetensors", b"a")
    (a.parent / "b.safetensors").write_bytes(b"b")  # (the same snapshot)
    caplog.set_level(logging.WARNING, logger="kame.hub")

    assert hf_download("org/repo", "a.safetensors").read_bytes() == b"a"  # probed: no answer, the cache
    assert len(conns) == 1
    assert hf_download("org/repo", "b.safetensors").read_bytes() == b"b"  # the cache only
    assert len(conns) == 1  # not asked about b
    with pytest.raises(HubUnreachable, match=r"hf://org/repo: c.safetensors is not in the local Hugging Face cache "
                                             r"and the hub at http://127.0.0.1:\d+ cannot be reached \(.*found "
                                             r"earlier in this process\)"):
        hf_download("org/repo", "c.safetensors")
    assert len(conns) == 1  # the second and third files were not asked about
    warnings = [r.getMessage() for r in caplog.records if r.name == "kame.hub"]
    assert len(warnings) == 1 and "cannot be reached" in warnings[0] and "local cache only" in warnings[0]


def test_a_hub_found_unreachable_is_remembered_per_endpoint(tmp_path, monkeypatch, silent_hub):
    """Another endpoint (HF_ENDPOINT) is still asked: what is remembered is one hub's silence."""
    url, conns = silent_hub
    _quiet_online_against(monkeypatch, tmp_path, url)
    monkeypatch.setattr(hub, "_unreachable", {"http://127.0.0.1:9": ("ConnectError: refused", 0.0)}, raising=False)
    monkeypatch.setattr(hub, "time", _Clock(10.0))  # (that entry is still fresh)
    with pytest.raises(HubUnreachable, match=r"cannot be reached \(ReadTimeout"):
        hf_download("org/repo", "x.safetensors")
    assert len(conns) == 1 and url in hub._unreachable


def _probe_failing_with(monkeypatch, tmp_path, exc: Exception) -> list[str]:
    """huggingface_hub's probe raising ``exc`` (the URLs it was asked about, in a list), a cached
    file org/repo a.safetensors, and kame.hub's clock a _Clock."""
    import huggingface_hub as hh

    _online_against(monkeypatch, tmp_path, "http://127.0.0.1:9")
    _cache_file(tmp_path / "hub", "org/repo", "a.safetensors", b"a")
    asked: list[str] = []

    def probe(url, **kwargs):
        asked.append(url)
        raise exc

    monkeypatch.setattr(hh, "get_hf_file_metadata", probe)
    monkeypatch.setattr(hub, "time", _Clock())
    return asked


def test_a_hub_found_unreachable_is_asked_again_after_the_ttl(tmp_path, monkeypatch):
    """Was: remembered for the rest of the process, so one timeout cut a server off the hub for good."""
    asked = _probe_failing_with(monkeypatch, tmp_path, ConnectionRefusedError(111, "Connection refused"))
    assert hf_download("org/repo", "a.safetensors").read_bytes() == b"a"
    assert hf_download("org/repo", "a.safetensors").read_bytes() == b"a"
    assert len(asked) == 1 and "http://127.0.0.1:9" in hub._unreachable  # remembered: not asked again
    hub.time.now += hub.UNREACHABLE_TTL_S - 1
    hf_download("org/repo", "a.safetensors")
    assert len(asked) == 1
    hub.time.now += 2  # past the TTL: asked again (and remembered again)
    hf_download("org/repo", "a.safetensors")
    assert len(asked) == 2 and hub._unreachable["http://127.0.0.1:9"] == ("ConnectionRefusedError: [Errno 111] "
                                                                          "Connection refused", hub.time.now)


def test_forget_unreachable_makes_the_next_download_ask_the_hub(tmp_path, monkeypatch):
    asked = _probe_failing_with(monkeypatch, tmp_path, TimeoutError("timed out"))
    hf_download("org/repo", "a.safetensors")
    hub.forget_unreachable()
    assert hub._unreachable == {}
    hf_download("org/repo", "a.safetensors")
    assert len(asked) == 2


@pytest.mark.parametrize("exc", [TypeError("unexpected keyword"), "FileMetadataError"])
def test_a_probe_failing_for_another_reason_is_not_remembered(tmp_path, monkeypatch, exc):
    """E.g. a mirror answering without ETag headers: not the network, so not the hub "unreachable"
    for every later file; the file comes from the cache, and the next one asks the hub again."""
    from huggingface_hub.errors import FileMetadataError

    if exc == "FileMetadataError":
        exc = FileMetadataError("Distant resource does not seem to be on huggingface.co. It is possible that a "
                                "configuration issue prevents you from downloading resources from it.")
    asked = _probe_failing_with(monkeypatch, tmp_path, exc)
    assert hf_download("org/repo", "a.safetensors").read_bytes() == b"a"
    assert hf_download("org/repo", "a.safetensors").read_bytes() == b"a"
    assert len(asked) == 2 and hub._unreachable == {}
    with pytest.raises(HubUnreachable, match=rf"b.safetensors is not in the local Hugging Face cache .*{type(exc).__name__}"):
        hf_download("org/repo", "b.safetensors")
    assert len(asked) == 3
