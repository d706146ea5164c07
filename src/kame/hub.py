"""Hugging Face Hub downloads: the one place every ``hf://`` source goes through (Mimi checkpoints,
front-end checkpoints and the companion files their config.json names).

    from kame.hub import cache_fix, hf_download, split_hf
    repo, revision, filename = split_hf("hf://kyutai/moshiko-pytorch-bf16@main/model.safetensors")
    path = hf_download(repo, filename, revision)      # a file in the local Hugging Face cache
    cache_fix(path)    # a damaged file there: what to delete and how to get it again (else None)
    cache_hint(path)   # the same as an error message's end, "; ..." (else "")

First one quick HEAD request asks the hub about the file (no retries, ``HF_HUB_ETAG_TIMEOUT``
seconds at most). If the hub answers, huggingface_hub downloads the file or takes it from the
cache as usual (so a branch that moved is updated). If it cannot be reached, the local cache is
used; a file not in it fails at once with one clear error, where huggingface_hub alone would
retry for ~25 s and log a warning per attempt. A hub found unreachable (a network error: no
answer within the timeout, connection refused, DNS, proxy ...) is remembered for
``UNREACHABLE_TTL_S`` seconds (logged): files asked for meanwhile are looked up in the cache
only, as with ``HF_HUB_OFFLINE``, so a hub that drops packets costs one timeout per two minutes,
not one per file; after that the hub is asked again (a long-running server is not cut off for
good by one timeout). ``forget_unreachable()`` forgets at once. Any other failure of the probe
(an odd answer, e.g. a mirror without ETag headers) is not remembered: that file comes from the
cache. With ``HF_HUB_OFFLINE`` set only the cache is looked at. Every failure is a
CheckpointError naming the repo and the file and saying what to do; two kinds are told apart by
their class:

    HubFileNotFound   the hub answered: the repo has no such file
    HubUnreachable    not in the cache, and HF_HUB_OFFLINE is set or the hub cannot be reached
"""

from __future__ import annotations

import importlib
import logging
import socket
import time
from pathlib import Path

from .errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)
UNREACHABLE_TTL_S = 120.0
# hub endpoint -> (why a probe of it failed ("ReadTimeout: timed out"), when: time.monotonic()):
# for UNREACHABLE_TTL_S it is not asked again, its files come from the cache only (module docstring)
_unreachable: dict[str, tuple[str, float]] = {}


def forget_unreachable() -> None:
    """Forget every hub found unreachable: the next download asks the hub again (e.g. once the
    network is back, without waiting ``UNREACHABLE_TTL_S``)."""
    _unreachable.clear()


def _still_unreachable(endpoint: str) -> str | None:
    """Why ``endpoint`` was found unreachable, if less than UNREACHABLE_TTL_S ago; else None."""
    entry = _unreachable.get(endpoint)
    if entry is None:
        return None
    if time.monotonic() - entry[1] >= UNREACHABLE_TTL_S:
        _unreachable.pop(endpoint, None)  # expired: ask the hub again
        return None
    return entry[0]


def _network_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is a network failure: timeout, connection refused or reset,
    DNS, proxy. huggingface_hub raises those of httpx2 (2.x), httpx (1.x) or requests (0.x)."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    kinds: list[type] = [TimeoutError, ConnectionError, socket.gaierror]
    for name in ("httpx2", "httpx"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        kinds += [mod.TimeoutException, mod.NetworkError, mod.ProxyError]
    try:
        import requests
    except ImportError:
        pass
    else:
        kinds += [requests.exceptions.ConnectionError, requests.exceptions.Timeout]
    return any(isinstance(e, tuple(kinds)) and not isinstance(e, OfflineModeIsEnabled)
               for e in (exc, exc.__cause__) if e is not None)


class HubFileNotFound(CheckpointError):
    """The repo (reached) has no such file."""


class HubUnreachable(CheckpointError):
    """The file is not in the local cache and the hub cannot be asked (offline, no network)."""


def split_hf(spec: str) -> tuple[str, str | None, str | None]:
    """``"hf://ORG/REPO[@REVISION][/FILE]"`` (or ``hf:ORG/...``) -> (repo, revision, file);
    revision and file are None when absent. A revision is a branch, tag or commit, or a git ref
    ``refs/KIND/NAME`` (a pull request's ``refs/pr/N``). A malformed spec is a ConfigError."""
    parts = spec.removeprefix("hf:").strip("/").split("/")
    name, at, revision = parts[1].partition("@") if len(parts) > 1 else ("", "", "")
    if revision == "refs":  # a git ref: refs/KIND/NAME (refs/pr/1, refs/heads/main, refs/convert/parquet)
        if len(parts) < 4 or not parts[2] or not parts[3]:
            raise ConfigError(f"{spec!r}: a revision starting with refs/ is refs/KIND/NAME (e.g. refs/pr/1)")
        revision, parts = "/".join(["refs", *parts[2:4]]), parts[:2] + parts[4:]
    if not parts[0] or not name:
        raise ConfigError(f"expected hf://ORG/REPO[@REVISION][/FILE], got {spec!r}")
    if at and not revision:  # "hf://a/b@/x": not silently the default branch
        raise ConfigError(f"{spec!r} has an empty revision after '@': give a branch, tag or commit, or drop the '@'")
    return f"{parts[0]}/{name}", revision or None, "/".join(parts[2:]) or None


def hf_download(repo: str, filename: str, revision: str | None = None) -> Path:
    """The local path of ``filename`` of Hugging Face repo ``repo`` (downloaded into the cache
    if needed), else a CheckpointError (HubFileNotFound / HubUnreachable, see the module doc)."""
    import huggingface_hub as hh
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    src = f"hf://{repo}" + (f"@{revision}" if revision else "")
    offline = bool(constants.HF_HUB_OFFLINE)
    endpoint = constants.ENDPOINT
    if not offline and (why := _still_unreachable(endpoint)) is not None:  # found so lately: the cache only
        unreachable = _unreachable_error(src, filename, why + ", found earlier in this process")
    elif not offline:
        try:  # one HEAD request, no retries: an unreachable hub fails here, fast and quietly
            hh.get_hf_file_metadata(hh.hf_hub_url(repo, filename, revision=revision),
                                    timeout=constants.HF_HUB_ETAG_TIMEOUT)
        except Exception as exc:
            err = _error(src, filename, exc, probing=True)
            if not isinstance(err, HubUnreachable):
                raise err from exc
            unreachable = err  # the cache may still have it
            if _network_error(exc):
                _unreachable[endpoint] = (_what(exc), time.monotonic())
                log.warning("the Hugging Face hub at %s cannot be reached (%s): using the local cache only "
                            "for the next %.0f s", endpoint, _what(exc), UNREACHABLE_TTL_S)
            else:  # not the network: the hub is asked again about the next file
                log.warning("asking the Hugging Face hub at %s about %s failed (%s): using the local cache "
                            "for it", endpoint, filename, _what(exc))
        else:
            try:
                return Path(hh.hf_hub_download(repo, filename, revision=revision))
            except Exception as exc:
                raise _error(src, filename, exc) from exc
    try:
        return Path(hh.hf_hub_download(repo, filename, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        pass  # not in the cache
    except Exception as exc:  # e.g. an invalid repo id
        raise _error(src, filename, exc) from exc
    if offline:
        raise HubUnreachable(f"{src}: {filename} is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                             f"is set: unset it to download the file, or pass a local path")
    raise unreachable


def cache_fix(path: str | Path, spec: bool = True) -> str | None:
    """For a damaged (truncated, corrupt) file ``path`` of the local Hugging Face cache
    (.../models--ORG--REPO/snapshots/COMMIT/FILE): what to delete and how to get it again, whatever
    spec led to it (huggingface_hub takes a file its cache holds as it is: downloading again gives
    the same one); ``spec``: offer an hf://ORG/REPO spec too (not for a caller that takes local
    files only). None for a file elsewhere."""
    path = Path(path).absolute()
    parts = path.parts
    at = next((i for i in range(len(parts) - 3) if parts[i + 1] == "snapshots"
               and parts[i].startswith(("models--", "datasets--", "spaces--"))), None)
    if at is None:
        return None
    kind, _, name = parts[at].partition("--")
    repo, commit, file = name.replace("--", "/"), parts[at + 2], "/".join(parts[at + 3:])
    files = [path, path.resolve()] if path.is_symlink() else [path]  # (the snapshot's link and its blob)
    typed = "" if kind == "models" else f" --repo-type {kind[:-1]}"
    hf = f"load it through an hf://{repo} spec, or " if spec and kind == "models" else ""
    return (f"it is in the local Hugging Face cache, which keeps a file it holds as it is (downloading again "
            f"gives this copy): delete {' and '.join(map(str, files))}, then get it again with network access: "
            f"{hf}run `hf download {repo} {file} --revision {commit}{typed}` (which puts it back where it was)")


def cache_hint(path: str | Path) -> str:
    """"; " + cache_fix for a file of the Hugging Face cache, to end an error message with (a
    wrong file elsewhere may be no damaged copy: no advice), else ""."""
    fix = cache_fix(path)
    return f"; {fix}" if fix else ""


def _error(src: str, filename: str, exc: Exception, probing: bool = False) -> CheckpointError:
    """The CheckpointError for a failed look-up or download of ``filename`` of ``src``."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    what = _what(exc)
    if isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError):
        return HubFileNotFound(f"{src} has no file {filename} ({what})")
    if isinstance(exc, HfHubHTTPError):  # unknown repo or revision, gated, hub error
        return CheckpointError(f"cannot get {filename} from {src}: {what}. Check the repo name and revision "
                               f"(a private or gated repo needs a login), or pass a local path")
    if probing and not isinstance(exc, ValueError):  # connection refused, timeout, DNS, proxy ...
        return _unreachable_error(src, filename, what)
    return CheckpointError(f"cannot get {filename} from {src}: {what}; pass a local path instead")


def _what(exc: Exception) -> str:
    """An exception in one line for messages: "ReadTimeout: timed out"."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _unreachable_error(src: str, filename: str, what: str) -> HubUnreachable:
    from huggingface_hub import constants

    return HubUnreachable(f"{src}: {filename} is not in the local Hugging Face cache and the hub at "
                          f"{constants.ENDPOINT} cannot be reached ({what}): download it once with network "
                          f"access (check HF_ENDPOINT / proxy settings), or pass a local path")
