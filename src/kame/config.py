"""The one configuration of kame: a commented dataclass tree, read from ONE TOML file plus
``--set key=value`` overrides.

    from kame.config import load_config
    cfg = load_config("kame.toml", ["backend.llm=openai:gpt-4.1", "runtime.max_sessions=8"])
    cfg.frontend.spec, cfg.backend.stt, cfg.server.port ...

A file looks like (every key optional; see docs/runtime.md for all of them)::

    mode = "tandem"
    [frontend]
    spec = "random:tiny"
    [backend]
    stt = "embedded"
    llm = "openai:gpt-4.1"
    [runtime]
    max_sessions = 4

Unknown keys and bad values raise kame.errors.ConfigError naming the dotted key
(``runtime.max_sessions: expected an integer, got 'x'``). validate_config makes the same checks of
a config made or changed in code (``KameConfig()``, ``cfg.runtime.max_sessions = 8``):
kame.runtime.engine.build_agent and the agents call it.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import re
import sys
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ConfigError
from .hub import split_hf
from .numeric import is_finite_number, is_real_number
from .paths import expand_user, local_path
from .model.config import PRESETS as MODEL_PRESETS  # (torch-free: kame.model imports torch lazily)
from .model.config import MAX_SEED, random_spec_options

MAX_SESSIONS = 256  # runtime.max_sessions' ceiling (rows of one batched step)
MAX_TORCH_THREADS = 1024  # runtime.torch_threads' ceiling (torch.set_num_threads fails on a C int's overflow)
_DEVICE = re.compile(r"(cpu|cuda|mps)(:\d+)?")  # a device option's form (kame.model.loaders.parse_device)
# The presets of a "random:NAME" front-end: all but "7b" (random 7B weights do not fit in memory)
RANDOM_FRONTENDS = tuple(p for p in MODEL_PRESETS if p != "7b")
MODES = ("tandem", "cascade")  # the agents a config builds (kame.runtime.engine.build_agent)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")  # a "scheme:" prefix (2+ characters: not a drive letter)


def frontend_spec_form(spec: Any) -> tuple[str, str | None, Path | None]:
    """The form of a front-end spec, checked without torch and without reading files:
    ("random", "PRESET[;KEY=VALUE,...]", None), ("hf", repo[@rev], None) or ("path", None, path), the path not
    necessarily existing; else ConfigError. kame.model.loaders.check_frontend_spec adds the
    path's existence (at model load)."""
    if not isinstance(spec, (str, Path)) or not str(spec).removeprefix("path:").removeprefix("file://").strip():
        raise ConfigError(f"front-end spec {spec!r}: give hf://ORG/REPO, a checkpoint folder or random:tiny")
    spec = str(spec)
    if spec == "random" or spec.startswith(("random:", "random;")):
        name = (spec[7:] if spec.startswith("random:") else spec[6:]) or "tiny"  # ("random;KEYS": tiny's)
        name = "tiny" + name if name.startswith(";") else name
        head = random_spec_options(name)[0]  # (its config keys checked by name; their values at load)
        if head not in RANDOM_FRONTENDS:
            raise ConfigError(f"unknown random front-end {spec!r}; use random:{'|'.join(RANDOM_FRONTENDS)}"
                              + (" (random 7B weights do not fit in memory: load a checkpoint)" if head == "7b" else ""))
        return "random", name, None
    if spec.startswith("hf:"):
        whole = f"expected hf://ORG/REPO[@REVISION] (a front-end is a whole repo, not one file), got {spec!r}"
        try:
            repo, revision, extra = split_hf(spec)
        except ConfigError as exc:  # (was: "expected hf://ORG/REPO[@REVISION][/FILE]", then /FILE refused)
            raise ConfigError(whole if str(exc).startswith("expected") else str(exc)) from None
        if extra is not None:
            raise ConfigError(whole)
        return "hf", repo + (f"@{revision}" if revision else ""), None
    return "path", None, local_path(spec.removeprefix("path:"))


def check_text(value: str, name: str) -> str:
    """``value`` if UTF-8 can encode it, else ConfigError naming ``name`` and where. A byte that is
    not UTF-8 in a command-line argument (typed in a latin-1 terminal or script) arrives as a
    surrogate escape (U+DC80-U+DCFF), which TTSs and LLMs refuse (was: a traceback from piper)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        ch = value[exc.start]
        what = f"byte 0x{ord(ch) - 0xDC00:02x}" if "\udc80" <= ch <= "\udcff" else f"a lone surrogate U+{ord(ch):04X}"
        raise ConfigError(f"{name}: not valid UTF-8 text ({what} at character {exc.start + 1}: from a terminal or "
                          "script in another encoding, e.g. latin-1?); give it as UTF-8") from None
    return value


def _opt(default: Any, *, choices: Iterable[Any] | None = None, min: float | None = None, max: float | None = None):
    """A dataclass field with validation metadata (allowed choices / numeric range)."""
    meta = {"choices": tuple(choices) if choices is not None else None, "min": min, "max": max}
    return field(default=default, metadata=meta)


@dataclass
class FrontendConfig:
    # which front-end LM: "random:tiny" | "random:small" | "random:100m" (random weights, for
    # tests/benches), "hf://SakanaAI/kame" (published checkpoint), or a local folder
    spec: str = "random:tiny"
    dtype: str = "float32"  # float32 | bfloat16 | float16, or a short name load_frontend takes (bf16, fp16, ...)
    device: str = "cpu"  # "cpu", "cuda", "cuda:N", "mps" (availability is checked when the model loads)
    # sampling; None (unset, or "none") = the checkpoint's config.json lm_gen_config value, else
    # kame's default (KAME/Moshi's: temp 0.8, temp_text 0.7, top_k 250, top_k_text 25); a value
    # set here wins over both. Temperature 0 = greedy
    temp: float | None = _opt(None, min=0.0)  # audio tokens
    temp_text: float | None = _opt(None, min=0.0)  # inner-monologue text tokens
    top_k: int | None = _opt(None, min=0)  # audio; 0 = no top-k
    top_k_text: int | None = _opt(None, min=0)
    seed: int = _opt(-1, min=-1, max=MAX_SEED)  # sampling seed; -1 = nondeterministic (torch's seeds: < 2**64)
    # the oracle stream (the back-end's predictions fed to the front-end): "auto" = the
    # checkpoint's config.json "oracle" key, else on (a Moshi checkpoint gets a copy of its
    # text_emb, as KAME initialises it) except for Kyutai STT; "on"; "off" = run it as plain Moshi
    oracle: str = _opt("auto", choices=("auto", "on", "off"))

    def validate(self) -> None:  # the forms only (no torch import); availability, files: at model load
        from .model.config import DTYPE_NAMES  # (torch-free: the names load_frontend and kame bench take)

        if self.dtype not in DTYPE_NAMES:  # (was: float32, bfloat16, float16 only, "bf16" refused)
            raise ConfigError(f"frontend.dtype: {self.dtype!r} is not one of {sorted(set(DTYPE_NAMES.values()))} "
                              f"(or their short names {sorted(k for k, v in DTYPE_NAMES.items() if k != v)})")
        self.dtype = DTYPE_NAMES[self.dtype]  # (its full name: in the run's records)
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"frontend.device {self.device!r} is not a torch device (e.g. 'cpu', 'cuda', "
                              f"'cuda:1', 'mps')")
        from . import registry  # scheme names only: nothing is imported

        if registry.plugin_scheme("frontend", self.spec):  # a plugin's scheme (or a built-in it replaced):
            registry.check_key_spec("frontend.spec", "frontend", self.spec)  # its factory reads the rest
            return
        try:
            kind, _, path = frontend_spec_form(self.spec)
        except ConfigError as exc:
            raise ConfigError(f"frontend.spec: {exc}") from None
        # a folder that does not exist yet is checked at model load; "nonsense://x" is no folder
        if kind == "path" and _SCHEME.match(str(self.spec)) and not str(self.spec).startswith(("path:", "file://")) \
                and not path.exists():
            raise ConfigError(f"frontend.spec: {self.spec!r} is not a front-end spec: use hf://ORG/REPO[@REVISION], "
                              f"a checkpoint folder (path:FOLDER if its name has a colon) or "
                              f"random:{'|'.join(RANDOM_FRONTENDS)}")


@dataclass
class CodecConfig:
    # "auto" = the checkpoint's own codec (Mimi for published checkpoints, "embedded" for the
    # embedded / random front-ends); or any codec spec: "mimi:...", "embedded"
    spec: str = "auto"

    def validate(self) -> None:  # the form only (nothing imported); files: when the codec loads
        if self.spec == "auto":
            return
        from . import registry  # scheme names only: nothing is imported

        _, arg = registry.check_key_spec("codec.spec", "codec", self.spec, also=("auto",),
                                         note=" ('auto': the front-end's own codec)")
        if arg is not None and arg.startswith("hf://"):  # e.g. mimi:hf://ORG/REPO[@REV][/FILE]
            try:
                split_hf(arg)
            except ConfigError as exc:
                raise ConfigError(f"codec.spec: {exc}") from None


@dataclass
class BackendConfig:
    # streaming STT ("embedded", "pocketsphinx", "whisper", "openai:MODEL") and LLM ("embedded",
    # "openai:MODEL"); "none" for both runs the front-end alone (no oracle), as stt "none" does
    # in a tandem (its LLM, which answers what the STT heard, is then not loaded)
    stt: str = "embedded"
    llm: str = "embedded"
    system_prompt: str = ""  # "" = the built-in KAME prompt (short spoken answers)
    knowledge_dir: str = ""  # folder of .txt/.md notes given to the LLM ("" = none)
    # re-prediction policy (as SakanaAI/kame): poll every poll_interval_s; restart on
    # >= min_new_words new user words or a final transcript; at most max_restarts per restart_window_s
    poll_interval_s: float = _opt(0.5, min=0.01)
    min_new_words: int = _opt(2, min=1)
    max_restarts: int = _opt(5, min=1)
    restart_window_s: float = _opt(2.0, min=0.0)
    # word-triggered restarts at most this often; unset (none) = poll_interval_s, as KAME, whose
    # restarts wait for its next poll
    min_interval_s: float | None = _opt(None, min=0.0)
    restart_on_final: bool = True  # restart at once on a final with new words (not held by min_interval_s; capped)
    event_driven: bool = True  # also decide on each transcript; false: on polls only (a final waits for one)
    # after a prediction was cancelled unheard, a word-triggered restart waits for the running
    # one's first piece (a final does not), so a slow LLM's predictions are not all cancelled
    # mid-turn (long monologues); false (default) = SakanaAI/kame's rule, better on short turns
    wait_first_token: bool = False
    max_reply_words: int = _opt(30, min=1)
    # the LLM prompt's conversation lines (oracle and cascade) hold at most this many characters,
    # the newest kept (0 = no limit, up to 40 lines): the embedded LLM's first token waits for the
    # whole prompt (4000 characters, ~1k tokens of English: ~3.5 s on a loaded 2-core machine)
    history_chars: int = _opt(4000, min=0)  # (= kame.backend.prompt.HISTORY_CHARS, the Python API's default)
    llm_max_tokens: int = _opt(80, min=1)
    # 0 = greedy: the embedded 135M LLM drifts off-topic (even into French) when sampled at 0.7;
    # raise it for a large hosted LLM if you want varied replies
    llm_temperature: float = _opt(0.0, min=0.0)
    retry_s: float = _opt(1.0, min=0.05)  # first wait before restarting a failed STT/LLM stream (doubles per failure)
    llm_retry_max_s: float = _opt(8.0, min=0.05)  # the oracle's LLM waits double from retry_s up to this
    # the oracle's LLM stream fails (and is retried) with no first piece this long after its request,
    # or no next piece this long, on the session clock (an openai:MODEL spec's own HTTP timeouts apply too)
    llm_first_token_timeout_s: float = _opt(10.0, min=0.1)
    llm_chunk_timeout_s: float = _opt(5.0, min=0.1)
    # the oracle's reset goes with a new prediction's first tokens, so the old one feeds the
    # front-end until then; false: the old one is cut at the restart (a bare reset: the front-end is fed
    # its start id, then pad, until the new one's first tokens come, which then go out with its reset as
    # with true; kame data synth's training sets never hold a bare reset, sets recorded from kame run do)
    reset_on_first_token: bool = True
    # an STT that has taken no audio for this long while frames wait for it has stalled: reported
    # and its stream restarted (raise it for an STT that loads a model inside stream())
    stt_stall_s: float = _opt(5.0, min=0.5)
    # feed the front-end's inner monologue to the LLM prompt as the agent's own words;
    # "auto" = yes, except for random-weight front-ends (their text is babble)
    agent_text: str = _opt("auto", choices=("auto", "on", "off"))
    # CPU priority of the back-end's compute (the STT's worker and decode threads, the embedded
    # LLM's child process): this many nice steps below the front-end step, so on a small machine a
    # whisper decode or an LLM token does not delay an 80 ms frame; 0 = the same priority
    nice: int = _opt(10, min=0, max=19)

    def validate(self) -> None:
        from . import registry  # scheme names only: nothing is imported

        for kind in ("stt", "llm"):  # the form only; packages, files and servers: when they load
            spec = getattr(self, kind)
            if isinstance(spec, str) and spec.strip().lower() == "none":  # ("None", as for optional keys)
                spec = "none"
                setattr(self, kind, spec)
            if spec != "none":
                registry.check_key_spec(f"backend.{kind}", kind, spec, also=("none",))
        if isinstance(self.system_prompt, str):  # (--set backend.system_prompt=... from a latin-1 terminal)
            check_text(self.system_prompt, "backend.system_prompt")
        if self.knowledge_dir:  # the check KnowledgeBase.from_folder makes
            from .backend.knowledge import check_knowledge_dir  # lazily: it imports numpy

            check_knowledge_dir(self.knowledge_dir, "backend.knowledge_dir")


@dataclass
class RuntimeConfig:
    max_sessions: int = _opt(4, min=1, max=MAX_SESSIONS)  # rows of the batched step (CapacityError beyond)
    batched: bool = True  # one batched step for all sessions (False: one step per session, for benches)
    # user audio buffered at most (tandem: older is dropped; cascade: audio more than this ahead of
    # real time is dropped on arrival, the newest kept); counted in stats dropped_input_s
    max_input_backlog_s: float = _opt(1.0, min=0.08)
    silence_db: float = _opt(-40.0, max=0.0)  # agent audio above this RMS (dBFS) counts as speech
    vad: str = _opt("auto", choices=("auto", "energy", "silero", "webrtc"))  # user end-of-speech detector
    # period of per-session "stats" Meta (0 = never; the cascade sends one only when a count changed)
    stats_interval_s: float = _opt(1.0, min=0.0)
    torch_threads: int = _opt(0, min=0, max=MAX_TORCH_THREADS)  # intra-op threads of the worker (0 = torch default)


def check_host(host: str, where: str) -> str:
    """``host``, the address to listen on as ``where`` gives it (server.host, kame serve's --host),
    unless it is blank (was: accepted, then `kame serve` failed to resolve the name ''; --host "":
    127.0.0.1 served, with no word)."""
    if not host.strip():
        raise ConfigError(f"{where}: empty; give the address to listen on, e.g. 127.0.0.1 (this machine only, "
                          f"the default) or 0.0.0.0 (every interface)")
    return host


@dataclass
class ServerConfig:  # the fields of kame.server.settings.ServerConfig (kept in sync)
    host: str = "127.0.0.1"
    port: int = _opt(8998, min=0, max=65535)  # Moshi's default port
    # larger client messages get a 0x05 error and are dropped; at least one 80 ms PCM message (1 + 1920 x 2
    # bytes: what the browser page and kame client --pcm send)
    max_message_bytes: int = _opt(65536, min=3841)
    hard_message_factor: int = _opt(4, min=1)  # beyond max_message_bytes * this, the socket is closed
    idle_timeout_s: float = _opt(30.0, min=0.0)  # too little client audio for this long -> error + close
    # a session that sent less than this share of real time in audio over idle_timeout_s is idle (0: any audio
    # keeps it): low enough for push-to-talk, above a sample now and then
    idle_audio_share: float = _opt(0.05, min=0.0, max=1.0)
    # client audio may run this far ahead of real time (a burst); beyond it, it is dropped undecoded
    audio_burst_s: float = _opt(3.0, min=0.08)
    auth_token: str | None = None  # if set, required as Bearer header or ?token= (env KAME_AUTH_TOKEN)
    auth_token_file: str | None = None  # a file holding auth_token instead (kame serve reads it; not both)
    max_session_s: float = _opt(0.0, min=0.0)  # a session open this long is closed (session_limit); 0: no limit
    # per-client outgoing queue (~5 s of 80 ms audio); at least 16: the start of a session and one
    # burst of an agent's text and metadata, which cannot be dropped (below, sessions failed as "not reading")
    send_queue_messages: int = _opt(64, min=16)
    send_timeout_s: float = _opt(10.0, min=0.0)  # one send blocked this long -> the client is gone; 0: never
    max_errors: int = _opt(100, min=1)  # protocol errors per connection before it is closed
    static_dir: str | None = None  # default: the package's static/ folder (checked by kame serve)
    # reverse proxies (comma-separated addresses/networks) whose X-Forwarded-For names the client (log, per-client
    # cap), whose X-Forwarded-Host/-Proto give the address a browser's page came from (Origin check), and whose
    # forwarded requests skip the Host check
    trusted_proxy: str | None = None
    # origins ("https://app.example.com") of pages served elsewhere that may open sessions ("*": any); a
    # browser's WebSocket from any other page but the server's own is refused (cross-site WebSocket hijacking)
    allowed_origins: list = field(default_factory=list)
    # Host names answered besides localhost, 127.x.x.x, [::1] (and, on another bind without a token, IP addresses
    # and this machine's names) ("*": any): DNS rebinding
    allowed_hosts: list = field(default_factory=list)
    max_sessions_per_client: int = _opt(0, min=0)  # live sessions from one client address; 0: no cap
    # a connection that has not sent a whole request's headers this long after it opened (or after its
    # last answer: an idle keep-alive) is closed (half-sent requests must not hold the server's files);
    # a WebSocket session is not (idle_timeout_s is its)
    header_timeout_s: float = _opt(20.0, min=1.0)
    # open TCP connections in all, and per peer address (its TCP address, a trusted_proxy's not counted;
    # 0: no cap): more are refused at once (503 / 429); keep max_connections well below `ulimit -n`
    max_connections: int = _opt(256, min=1)
    max_connections_per_client: int = _opt(32, min=0)

    def validate(self) -> None:
        check_host(self.host, "server.host")
        if 0 < self.max_connections_per_client < self.max_sessions_per_client:
            raise ConfigError(f"server.max_connections_per_client ({self.max_connections_per_client}) is below "
                              f"server.max_sessions_per_client ({self.max_sessions_per_client}): each session is "
                              f"a connection; raise the first or lower the second")
        if self.allowed_origins or self.allowed_hosts:  # (the server's own check; aiohttp only then)
            from .server.guard import parse_hosts, parse_origins

            parse_origins(self.allowed_origins), parse_hosts(self.allowed_hosts)


try:  # the [cascade] section is owned by kame.cascade (its fields are documented there)
    from .cascade.config import CascadeConfig
except ImportError:  # pragma: no cover - cascade not installed/ready

    @dataclass
    class CascadeConfig:  # type: ignore[no-redef]
        tts: str = "embedded"  # TTS spec for the cascade's spoken reply


@dataclass
class KameConfig:
    mode: str = _opt("tandem", choices=MODES)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)

    def to_dict(self) -> dict:
        """The config as plain data, to write beside a run: a server.auth_token is masked (was:
        written out as it is, e.g. from a config file shared with `kame serve`)."""
        d = dataclasses.asdict(self)
        if d["server"].get("auth_token"):
            d["server"]["auth_token"] = "***"
        return d


# ----------------------------------------------------------------------------------------
@functools.cache
def _hints(cls: type) -> dict[str, Any]:  # (typing.get_type_hints evaluates the annotations: ~0.2 ms a call)
    return typing.get_type_hints(cls)


def _type_of(cls: type, name: str) -> Any:
    return _hints(cls)[name]


def _check_value(path: str, f: dataclasses.Field, tp: Any, value: Any) -> Any:
    """Return ``value`` converted to the field's type, or raise ConfigError naming ``path``. A value
    set in code of a compatible type is converted too (a Path -> str, a numpy integer -> int, a
    numpy float -> float, a numpy bool -> bool; never a bool to a number): TOML and --set values
    give none of those."""
    args = typing.get_args(tp)
    if type(None) in args:  # Optional[X]: TOML has no null, so the string "none" means None
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        inner = [a for a in args if a is not type(None)]
        tp = inner[0] if len(inner) == 1 else Any
    if tp is bool:
        value = bool(value) if _is_numpy_bool(value) else value  # (was refused: np.bool_ is no bool subclass)
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        value = int(value)
    elif tp is float:
        if not is_real_number(value):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if not is_finite_number(value):  # TOML has nan/inf (they pass every min/max check), and 400-digit ints
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        value = float(value)
    elif tp is str:
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{path}: {value!r} is not one of {list(meta['choices'])}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"{path}: must be >= {meta['min']}, got {value!r}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(f"{path}: must be <= {meta['max']}, got {value!r}")
    return value


def _is_numpy_bool(value: Any) -> bool:
    """``value`` is numpy's bool (``np.bool_(True)``, an element of a bool array); never while
    numpy is not imported (this module does not import it)."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.bool_)


def _apply(obj: Any, data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Set fields of dataclass ``obj`` from a (nested) mapping, validating each; return the dotted
    keys it set ({"frontend": {"spec": ...}} -> ["frontend.spec"]: key_source's file keys)."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    keys: list[str] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise unknown_key(path, fields)
        f = fields[key]
        tp = _type_of(type(obj), key)
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: expected a table [{path}], got {value!r}")
            keys += _apply(getattr(obj, key), value, prefix=f"{path}.")
        else:
            setattr(obj, key, _check_value(path, f, tp, value))
            keys.append(path)
    return keys


def unknown_key(path: str, known: Iterable[str]) -> ConfigError:
    """The error of a key ``path`` ("runtime.max_sesions") its section does not have (``known``:
    the section's keys), in a file, a --set or set in code: the known keys, and the ones meant: a near
    spelling here and that name in another section (server.max_sessions -> server.max_session_s or
    runtime.max_sessions; was: the near spelling alone, a key of another meaning)."""
    import difflib

    known = sorted(known)
    name = path.rpartition(".")[2]
    there = [f.name for f in dataclasses.fields(KameConfig) if dataclasses.is_dataclass(f.default_factory)
             and f.name != path.partition(".")[0] and name in {g.name for g in dataclasses.fields(f.default_factory)}]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    # (both when both: backend.temperature -> backend.llm_temperature or cascade.temperature, a cascade-only key)
    options = [f"{path[: len(path) - len(name)]}{c}" for c in close] + [f"{s}.{name}" for s in there[:1]]
    meant = f"; did you mean {' or '.join(options)}?" if options else ""
    return ConfigError(f"unknown config key {path!r} (known here: {', '.join(known)}){meant}")


def parse_override(item: str) -> tuple[str, Any, str]:
    """``"a.b=value"`` -> ("a.b", value, the text after "="); value parsed as a TOML value when it
    is one (numbers, true/false, "quoted"), else taken as a plain string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value, raw


def _override(cfg: KameConfig, key: str, value: Any, raw: str | None = None) -> list[str]:
    """Set one key (or a table's keys: ``backend={...}``); ``raw``: the text the user typed
    (--set), which a string key keeps as it is. Returns the dotted keys it set."""
    parts = key.split(".")
    obj: Any = cfg
    for i, part in enumerate(parts[:-1]):
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            if dataclasses.is_dataclass(obj):
                raise unknown_key(".".join(parts[: i + 1]), (f.name for f in dataclasses.fields(obj)))
            raise ConfigError(f"unknown config key {'.'.join(parts[: i + 1])!r}")
        obj = getattr(obj, part)
        if not dataclasses.is_dataclass(obj):
            raise ConfigError(f"unknown config key {key!r} ({'.'.join(parts[: i + 1])} is not a table)")
    name = parts[-1]
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if name in fields and str in (_type_of(type(obj), name), *typing.get_args(_type_of(type(obj), name))) \
            and not isinstance(value, str):
        # --set server.auth_token=1234 / backend.system_prompt=true stay strings, as typed (was:
        # str() of the number: "2.50" became "2.5", "1e5" "100000.0", "0x1F" "31")
        value = raw if raw is not None else ("true" if value else "false") if isinstance(value, bool) else str(value)
    return _apply(obj, {name: value}, prefix=".".join(parts[:-1]) + "." if len(parts) > 1 else "")


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
) -> KameConfig:
    """Read the TOML file at ``path`` (None = defaults) and apply ``overrides``
    (``["a.b=v", ...]`` as from ``--set``, or a ``{"a.b": v}`` mapping)."""
    cfg = KameConfig()
    sources: dict[str, str] = {}  # dotted key -> the file that set it (key_source)
    if path is not None:
        p = expand_user(path, "--config")
        if p.is_dir():
            raise ConfigError(f"config file {p} is a folder; give a TOML file")
        if not p.exists():  # a pipe (--config <(...)) or /dev/null is read like a file
            raise ConfigError(f"config file not found: {p}")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8-sig"))  # (a BOM, as Notepad writes: skipped)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
        except OSError as exc:  # e.g. no permission to read it
            raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from exc
        sources = dict.fromkeys(_apply(cfg, data), str(p))
    if isinstance(overrides, (str, bytes)):  # (iterating it would give one-character "overrides")
        raise ConfigError(f"overrides: give a list of 'key=value' strings or a mapping, got the string {overrides!r}")
    if overrides:
        items = ((k, v, None) for k, v in overrides.items()) if isinstance(overrides, Mapping) \
            else (parse_override(s) for s in overrides)
        for key, value, raw in items:
            for k in _override(cfg, key, value, raw):  # (the keys it set: the override's, not the file's)
                sources.pop(k, None)
    validate_config(cfg, keys=False)  # (each key _apply set was checked then; the defaults are valid)
    cfg._sources = sources
    return cfg


def validate_config(cfg: KameConfig, components: Mapping[str, Any] | None = None, *, keys: bool = True) -> KameConfig:
    """``cfg``, after the checks load_config makes of the values, for a config made or changed in code:
    each key's type and range (as a loaded key's, its value converted: 1 -> 1.0, "none" -> None), each
    section's validate(), and the keys of different sections that only work together; else ConfigError
    naming the dotted key (``runtime.max_input_backlog_s: must be >= 0.08, got -1.0``). ``components``:
    an agent's own parts, which stand in for the config's (a cascade's "stt" / "llm"). ``keys=False``:
    not each key's own check (load_config's: it checks a key as it sets it)."""
    if keys:
        _check_fields(cfg)
    for f in dataclasses.fields(cfg):
        validate = getattr(getattr(cfg, f.name), "validate", None)
        if callable(validate):
            validate()
    _check_together(cfg, components)
    return cfg


def _check_fields(obj: Any, prefix: str = "") -> None:
    """Every key of dataclass ``obj`` (and of its sections) checked as _apply checks a key it sets,
    the converted value set back; an attribute set in code that is no key (``cfg.runtime.max_sesions
    = 8``, a typo: was ignored, the default kept) is unknown_key's error, as in a file. Names
    starting with "_" are not keys (load_config's ``_sources``)."""
    declared = {f.name for f in dataclasses.fields(obj)}
    for name in vars(obj):
        if name not in declared and not name.startswith("_"):
            raise unknown_key(f"{prefix}{name}", declared)
    for f in dataclasses.fields(obj):
        path, tp, value = f"{prefix}{f.name}", _type_of(type(obj), f.name), getattr(obj, f.name)
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, tp):
                raise ConfigError(f"{path}: expected the [{path}] section (a {tp.__module__}.{tp.__name__}), "
                                  f"got {type(value).__name__} {value!r}")
            _check_fields(value, f"{path}.")
        else:
            setattr(obj, f.name, _check_value(path, f, tp, value))


def key_source(cfg: KameConfig, key: str) -> str | None:
    """The config file that set ``key`` ("frontend.spec"), for errors that say which key to change
    where; None for a default, an override (--set) or a config not made by load_config."""
    return getattr(cfg, "_sources", {}).get(key)


def _check_together(cfg: KameConfig, components: Mapping[str, Any] | None = None) -> None:
    """Keys of different sections that only work together: checked at load, not after the models
    took seconds to load."""
    if cfg.mode == "cascade":
        from .cascade.agent import check_cascade_backend

        check_cascade_backend(cfg, components)
    elif getattr(cfg.cascade, "hybrid_routing", False) and "none" in (cfg.backend.stt, cfg.backend.llm):
        raise ConfigError("cascade.hybrid_routing needs backend.stt and backend.llm (not 'none')")


def add_config_arguments(parser, note: str = "") -> None:
    """The shared ``--config FILE`` / ``--set key=value`` options (run, serve, benches); ``note``
    ends --config's help (serve's: what its [server] section sets)."""
    from .cliargs import Once

    parser.add_argument("--config", metavar="FILE", default=None, action=Once, help=f"TOML config file{note}")
    parser.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
        help="override one config key, e.g. --set backend.llm=openai:gpt-4.1 (repeatable)",
    )


def config_from_args(args) -> KameConfig:
    """The config of ``--config`` and ``--set``, and ``--mode`` (tandem/cascade) when the command has
    it: applied as the last override, so the checks that depend on the mode see it (was: set after
    them, so `--mode tandem` on a cascade config with backend.stt=none was refused)."""
    mode = getattr(args, "mode", None)
    sets = list(getattr(args, "overrides", None) or []) + ([f"mode={mode}"] if mode in MODES else [])
    return load_config(getattr(args, "config", None), sets)
