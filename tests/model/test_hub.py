"""kame.hub: the one Hugging Face download of every hf:// source (Mimi, front-ends, companions).
No real network: an unused localhost port stands for an unreachable hub, and a tiny local HTTP
server for a hub that answers 404 (or serves files)."""

import hashlib
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from kame.errors import CheckpointError, ConfigError
from kame.hub import HubFileNotFound, HubUnreachable, hf_download, split_hf


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _online_against(monkeypatch, tmp_path, endpoint: str) -> None:
    """huggingface_hub pointed at ``endpoint`` with an empty cache, HF_HUB_OFFLINE off, and no hub
    remembered as unreachable (kame.hub remembers one per process: a port found closed by an
    earlier test may be a server's now)."""
    import huggingface_hub.constants as hc

    import kame.hub

    monkeypatch.setattr(kame.hub, "_unreachable", {}, raising=False)

    monkeypatch.setattr(hc, "ENDPOINT", endpoint)
    monkeypatch.setattr(hc, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)


def test_split_hf():
    assert split_hf("hf://org/repo") == ("org/repo", None, None)
    assert split_hf("hf:org/repo@v1/sub/f.safetensors") == ("org/repo", "v1", "sub/f.safetensors")
    # a pull request's revision holds slashes (was: revision "refs", file "pr/1/...")
    assert split_hf("hf://org/repo@refs/pr/1") == ("org/repo", "refs/pr/1", None)
    assert split_hf("hf://org/repo@refs/pr/12/m.safetensors") == ("org/repo", "refs/pr/12", "m.safetensors")
    assert split_hf("hf://org/repo@refs/heads/main/m.safetensors") == ("org/repo", "refs/heads/main", "m.safetensors")
    for bad in ("hf://org/repo@refs/pr", "hf://org/repo@refs/pr/", "hf://org/repo@refs"):  # (were: revision "refs")
        with pytest.raises(ConfigError, match="a revision starting with refs/ is refs/KIND/NAME"):
            split_hf(bad)
    from kame.config import frontend_spec_form
    assert frontend_spec_form("hf://org/repo@refs/pr/3") == ("hf", "org/repo@refs/pr/3", None)
    for bad in ("hf://org", "hf://", "hf://org/@v1"):
        with pytest.raises(ConfigError, match=r"hf://ORG/REPO\[@REVISION\]"):
            split_hf(bad)
    for bad in ("hf://org/repo@", "hf://org/repo@/x.safetensors"):  # was: the default branch, silently
        with pytest.raises(ConfigError, match="has an empty revision after '@'"):
            split_hf(bad)


def test_unreachable_hub_fails_fast_and_quietly(tmp_path):
    """huggingface_hub alone retries ~25 s and logs ~22 warnings; kame fails at once, one error."""
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{_unused_port()}", "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "0",
           "PATH": "/usr/bin:/bin"}
    code = "from kame.hub import hf_download; hf_download('org/repo', 'w.safetensors')"
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - t0 < 8
    assert out.returncode != 0 and "Retrying" not in out.stderr and "thrown while requesting" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("kame.hub.HubUnreachable: hf://org/repo: w.safetensors is not in the local Hugging Face "
                           "cache and the hub at http://127.0.0.1:"), out.stderr


def test_unreachable_hub_through_mimi_and_frontend_loaders(tmp_path, monkeypatch, caplog):
    from kame.codec.mimi import load_mimi
    from kame.model.loaders import load_frontend

    _online_against(monkeypatch, tmp_path, f"http://127.0.0.1:{_unused_port()}")
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match=r"hf://kyutai/mimi: tokenizer-\S+ is not in the local .* cannot be reached"):
        load_mimi("hf://kyutai/mimi")
    with pytest.raises(HubUnreachable, match="hf://acme/kame: config.json is not in the local"):
        load_frontend("hf://acme/kame")
    assert time.monotonic() - t0 < 5
    assert not [r for r in caplog.records if r.name.startswith("huggingface_hub") and r.levelname == "WARNING"]


class _Hub404(http.server.BaseHTTPRequestHandler):
    """A hub that has repo acme/legacy (without config.json) and nothing else."""

    def do_HEAD(self):
        self.send_response(404)
        self.send_header("X-Error-Code", "EntryNotFound" if self.path.startswith("/acme/legacy/") else "RepoNotFound")
        self.send_header("X-Error-Message", "not here")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def hub404():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub404)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hub_answers_missing_file_or_repo(tmp_path, monkeypatch, hub404):
    _online_against(monkeypatch, tmp_path, hub404)
    with pytest.raises(HubFileNotFound, match="hf://acme/legacy has no file config.json"):
        hf_download("acme/legacy", "config.json")
    with pytest.raises(CheckpointError, match="cannot get model.safetensors from hf://acme/nope@v2: .*repo name") as e:
        hf_download("acme/nope", "model.safetensors", "v2")
    assert not isinstance(e.value, (HubFileNotFound, HubUnreachable))
    from kame.model.loaders import load_frontend

    # a repo without config.json is a legacy Moshi 7B repo (as in moshi): its weights are asked for next
    with pytest.raises(HubFileNotFound, match="hf://acme/legacy has no file model.safetensors"):
        load_frontend("hf://acme/legacy")


def _cache_file(cache, repo: str, filename: str, data: bytes, revision: str = "main"):
    """A file in the Hugging Face cache layout (models--ORG--REPO/snapshots/COMMIT/FILE, refs/REV)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / revision).write_text(commit)
    path = root / "snapshots" / commit / filename
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


def test_unreachable_hub_falls_back_to_the_cache(tmp_path, monkeypatch):
    """No network but the file was downloaded before: the cached copy, at once, no error."""
    import huggingface_hub.constants as hc

    _online_against(monkeypatch, tmp_path, f"http://127.0.0.1:{_unused_port()}")
    cached = _cache_file(tmp_path / "hub", "org/repo", "w.safetensors", b"weights")
    t0 = time.monotonic()
    assert hf_download("org/repo", "w.safetensors").read_bytes() == b"weights"
    assert time.monotonic() - t0 < 5
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)  # offline: the cache only
    assert hf_download("org/repo", "w.safetensors") == cached
    with pytest.raises(HubUnreachable, match="not in the local Hugging Face cache and HF_HUB_OFFLINE is set"):
        hf_download("org/repo", "other.safetensors")


def test_offline_uncached_config_json_is_not_a_repo_without_one(tmp_path, monkeypatch, caplog):
    """Offline, a repo whose weights are cached but whose config.json is not: kame cannot know
    whether the repo has one. It says so (was: "repo has no config.json; assuming Moshi 7B"), and
    when the Moshi 7B it then assumes does not fit the weights, says that this is the likely cause
    (was: only "checkpoint lacks 316 key(s)")."""
    import logging

    import huggingface_hub.constants as hc

    from kame.model.loaders import load_frontend, save_frontend

    model, _ = load_frontend("random:tiny")
    folder = save_frontend(model, tmp_path / "ck")
    weights = (folder / "model.safetensors").read_bytes()
    _cache_file(tmp_path / "hub", "acme/weights-only", "model.safetensors", weights)
    known = _cache_file(tmp_path / "hub", "acme/legacy", "model.safetensors", weights)
    no_exist = known.parents[2] / ".no_exist" / known.parent.name  # huggingface_hub's "this repo has no such file"
    no_exist.mkdir(parents=True)
    (no_exist / "config.json").write_text("")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    caplog.set_level(logging.WARNING, logger="kame.model.loaders")
    with pytest.raises(CheckpointError) as e:
        load_frontend("hf://acme/weights-only")
    msg = str(e.value)
    # (the config's sizes checked against the file's header before the model is built: was "(checkpoint lacks ...")
    assert msg.startswith("hf://acme/weights-only: its weights do not fit Moshi 7B (the assumed config has dim=4096, "
                          "but the file's text_emb.weight has shape (1001, 64): dim=64)")
    assert ("Moshi 7B was assumed because the config.json of hf://acme/weights-only is not in the local Hugging Face "
            "cache (offline") in msg and "that assumption is the likely cause: download it once with network" in msg
    assert "whether the repo has one is unknown; assuming Moshi 7B" in caplog.text
    assert "acme/weights-only has no config.json" not in caplog.text
    caplog.clear()
    with pytest.raises(CheckpointError, match=r"Moshi 7B was assumed because hf://acme/legacy has no config.json \(as "
                                              r"recorded in the local Hugging Face cache\); that assumption is the likely cause"):
        load_frontend("hf://acme/legacy")
    assert "hf://acme/legacy has no config.json (as recorded" in caplog.text


class _HubServing(http.server.BaseHTTPRequestHandler):
    """A hub whose repo org/repo (commit "c" * 40) holds FILES."""

    FILES: dict[str, bytes] = {}

    def _head(self) -> bytes:
        data = self.FILES[self.path.rsplit("/", 1)[-1]]
        self.send_response(200)
        self.send_header("X-Repo-Commit", "c" * 40)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return data

    def do_HEAD(self):
        self._head()

    def do_GET(self):
        self.wfile.write(self._head())

    def log_message(self, *args):
        pass


def test_a_damaged_file_of_the_cache_says_what_to_delete_and_that_works(tmp_path, monkeypatch):
    """huggingface_hub takes a file its cache holds as it is, even online: "download it again"
    could not be followed (it gave the same truncated copy). The error names the snapshot's link
    and its blob; once both are deleted, the next load of the hf:// spec downloads the file whole,
    and so does the `hf download` command it gives, back into the same snapshot folder (for a
    snapshot folder given as a local spec: was "load it again with network access", which
    then found no file)."""
    import torch
    from safetensors.torch import save

    from kame.model.formats import read_json
    from kame.model.tensorfiles import safetensors_header

    weights = save({"w": torch.zeros(64)})
    _HubServing.FILES = {"model.safetensors": weights, "config.json": b'{"dim": 64}'}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubServing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _online_against(monkeypatch, tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
        for name, read in (("model.safetensors", safetensors_header), ("config.json", read_json)):
            path = hf_download("org/repo", name)
            blob = path.resolve()
            assert path.is_symlink() and blob.parent.name == "blobs"
            blob.write_bytes(_HubServing.FILES[name][:-5])  # cut short (an interrupted copy of the cache)
            assert hf_download("org/repo", name).stat().st_size == blob.stat().st_size  # online: the same copy
            with pytest.raises((CheckpointError, ConfigError)) as e:
                read(hf_download("org/repo", name))
            # (was: "... download or copy it again")
            assert (f"it is in the local Hugging Face cache, which keeps a file it holds as it is (downloading again "
                    f"gives this copy): delete {path} and {blob}, then get it again with network access: load it "
                    f"through an hf://org/repo spec, or run `hf download org/repo {name} --revision {'c' * 40}` (which "
                    f"puts it back where it was)") in str(e.value)
            path.unlink()
            blob.unlink()
            if name == "config.json":  # the hf:// spec
                assert hf_download("org/repo", name).read_bytes() == _HubServing.FILES[name]
            else:  # the command, as given
                command = re.search(r"`hf (download [^`]+)`", str(e.value))[1].split()
                env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
                       "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
                subprocess.run([sys.executable, "-m", "huggingface_hub.cli.hf", *command], env=env, check=True,
                               capture_output=True, timeout=120)
                assert path.read_bytes() == _HubServing.FILES[name]  # where it was
            read(hf_download("org/repo", name))
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("damage", ["zeros", "random", "header-byte", "bad-entry", "empty-json"])
def test_a_corrupt_or_empty_cached_file_says_what_to_delete(tmp_path, damage):
    """A cached file corrupt rather than cut short (an interrupted copy's zeros, junk, a flipped
    byte in its header, a header safetensors refuses) or an empty config.json: the same advice
    (was: only "no safetensors header" / "is empty", which re-downloading could not fix). The
    same file elsewhere gets none (it may be a wrong file, not a damaged copy)."""
    import json
    import struct

    import torch
    from safetensors.torch import save

    from kame.model.formats import read_json
    from kame.model.tensorfiles import read_safetensors

    good = save({"w": torch.zeros(64)})
    bad_entry = json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}).encode()
    data = {"zeros": bytes(len(good)), "random": bytes(range(256)) * 2, "header-byte": good[:9] + b"X" + good[10:],
            "bad-entry": struct.pack("<Q", len(bad_entry)) + bad_entry + bytes(8), "empty-json": b""}[damage]
    name = "config.json" if damage == "empty-json" else "model.safetensors"
    read = read_json if damage == "empty-json" else read_safetensors
    for path in (_cache_file(tmp_path / "hub", "org/repo", name, data), tmp_path / name):
        path.write_bytes(data)
        with pytest.raises((CheckpointError, ConfigError)) as e:
            read(path)
        fix = (f"it is in the local Hugging Face cache, which keeps a file it holds as it is (downloading again "
               f"gives this copy): delete {path}, then get it again with network access: load it through an "
               f"hf://org/repo spec, or run `hf download org/repo {name} --revision {path.parent.name}`")
        cached = path.parent.name != tmp_path.name
        assert (fix in str(e.value)) == cached and ("Hugging Face" in str(e.value)) == cached, str(e.value)
