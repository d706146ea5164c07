"""The ``kame`` command line.

    kame demo                         # the main job on the embedded default
    kame bench step|codec|codec-quality|backend|sessions|latency|soak|train
    kame codec roundtrip IN.wav -o OUT.wav --codec embedded
    kame data synth QA.jsonl -o data/ --llm SPEC  # training dialogues from a QA set (simulated oracle)
    kame data oracle data/ --llm random  # a new simulated oracle for them (audio and codes kept)
    kame data encode data/ --jobs 8     # their codes cache, before training
    kame train data/train.jsonl -o runs/x  # fine-tune a front-end on them
    kame eval mtbench question.jsonl -o eval/ --judge SPEC  # spoken MT-Bench
    kame eval pairwise eval/ eval-cascade/ -o pair/ --judge SPEC  # two of its folders compared (A/B)
    kame run IN.wav -o OUT.wav        # file mode
    kame serve                        # WebSocket server + browser page
    kame client URL IN.wav -o OUT.wav # a wav file into a running server, its answer out

Each subcommand lives in its own module, which exposes ``add_arguments(parser)`` and
``main(args) -> int``; this file only maps names to modules (imported lazily, so
``kame --help`` is fast and a missing optional dependency only affects its command).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import sys
import textwrap

from .errors import KameError

# (command path) -> (module, help). The module provides add_arguments(parser) and main(args).
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("demo",): ("kame.demo", "run the main job end to end on the embedded default"),
    ("run",): ("kame.runtime.filemode", "run one conversation from a wav file"),
    ("serve",): ("kame.server.app", "serve the WebSocket API and the browser page"),
    ("client",): ("kame.server.client", "talk to a running `kame serve` from a wav file, save its answer"),
    ("codec", "roundtrip"): ("kame.codec.roundtrip", "encode+decode an audio file through a codec"),
    ("codec", "fit"): ("kame.codec.embedded.fit", "fit the embedded codec from synthesized speech"),
    ("data", "synth"): ("kame.train.synth", "synthetic spoken dialogues from a QA set, with a simulated oracle"),
    ("data", "oracle"): ("kame.train.reoracle", "simulate the oracle of existing dialogues again (their audio stays)"),
    ("data", "encode"): ("kame.train.encode", "the codes cache of a set, made once in several processes"),
    ("train",): ("kame.train.finetune", "fine-tune a front-end on a manifest of dialogues (torchrun for several processes)"),
    ("eval", "follow"): ("kame.eval.follow", "how well a front-end says its oracle on held-out dialogues"),
    ("eval", "mtbench"): ("kame.eval.mtbench", "spoken MT-Bench: questions spoken to the agent, answers rated by an LLM judge"),
    ("eval", "pairwise"): ("kame.eval.pairwise", "two kame eval mtbench folders compared answer by answer by an LLM judge (A/B)"),
    ("bench", "step"): ("kame.bench.step", "front-end step time"),
    ("bench", "codec"): ("kame.bench.codec", "codec encode/decode time"),
    ("bench", "codec-quality"): ("kame.bench.codec_quality", "codec intelligibility (whisper WER), log-mel and F0 error"),
    ("bench", "backend"): ("kame.bench.backend", "STT WER/latency, LLM TTFT, oracle lag"),
    ("bench", "sessions"): ("kame.bench.sessions", "real-time sessions sustained"),
    ("bench", "latency"): ("kame.bench.latency", "tandem vs cascade latency"),
    ("bench", "train"): ("kame.bench.train", "kame train's memory per process and step time, per layout"),
    ("bench", "soak"): ("kame.bench.soak", "server soak: concurrent sessions, protocol fuzzing, connect cycles"),
}


# The output option's two long spellings: a command declares one (with -o), the parser adds the other
# as a hidden alias (was: `--out` in five commands, `--output` in six, the other one refused).
OUTPUT_SPELLINGS = ("--out", "--output")


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, except that a line is never broken inside a word nor at its hyphens
    (was: `kame train --help` at 80 columns broke its --frontend example inside the quotes, so a
    pasted copy named a wrong key); a word longer than the column runs past it."""

    def _split_lines(self, text, width):
        text = self._whitespace_matcher.sub(" ", text).strip()
        return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)

    def _fill_text(self, text, width, indent):
        text = self._whitespace_matcher.sub(" ", text).strip()
        return textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent,
                             break_long_words=False, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, except that a failed write of its help or version to standard output is
    not swallowed (was: `kame --help > /dev/full` exited 0, the help lost): main says it as any
    command's (one line, status 1; a closed pipe: 141). Its usage errors on stderr stay argparse's
    (status 2; a full stderr cannot be told anyway). Its subparsers are of this class too.

    An option declared with one of OUTPUT_SPELLINGS also takes the other (its help shows the one
    declared); the help is laid out by _Formatter unless the command sets its own."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        spelled = [a for a in args if a in OUTPUT_SPELLINGS]
        alias = [a for a in OUTPUT_SPELLINGS if a not in args] if len(spelled) == 1 else []
        action = super().add_argument(*args, *alias, **kwargs)  # (dest: the first long name, the declared one)
        action.kame_hidden = tuple(alias)
        return action

    def format_usage(self) -> str:
        with self._aliases_hidden():
            return super().format_usage()

    def format_help(self) -> str:
        with self._aliases_hidden():
            return super().format_help()

    @contextlib.contextmanager
    def _aliases_hidden(self):
        """The options' hidden aliases out of their option strings while the help is formatted."""
        saved = [(a, a.option_strings) for a in self._actions if getattr(a, "kame_hidden", ())]
        for action, strings in saved:
            action.option_strings = [s for s in strings if s not in action.kame_hidden]
        try:
            yield
        finally:
            for action, strings in saved:
                action.option_strings = strings

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        if hasattr(ns, "plugin"):  # (the top level's parse: _common_options, in the order given)
            ns.plugin = [*ns.plugin, *(m for dest in PLUGIN_DESTS for m in ns.__dict__.pop(dest, []))]
        return ns, rest

    def _print_message(self, message, file=None):
        if message and file is not None and file is sys.stdout:  # (a _Marked stream under main)
            file.write(message)
        else:
            super()._print_message(message, file)


def _build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, dict]:
    parser = _Parser(
        prog="kame", description="kame: real-time tandem voice agents",
        epilog="environment: KAME_AUTH_TOKEN (kame serve's bearer token, and kame client's), KAME_PLUGINS (plugin modules), "
               "KAME_CACHE (kame's cache: the embedded LLM's converted copy, the bench recordings; default "
               "~/.cache/kame), HF_HUB_OFFLINE=1 (hf:// from the local cache only), "
               "OPENAI_API_KEY / OPENAI_BASE_URL (the openai: components' key and server; for the STT "
               "OPENAI_STT_API_KEY / OPENAI_STT_BASE_URL and for the TTS OPENAI_TTS_API_KEY / "
               "OPENAI_TTS_BASE_URL come first when set), OPENAI_MODEL (the model of an LLM spec 'openai' "
               "without one), OPENAI_TTS_MODEL (the same for a TTS spec 'openai'; an STT spec names its model)")
    parser.add_argument("--version", action="version", version=f"kame {__import__('kame').__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE", help=PLUGIN_HELP)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    leaves: dict = {}
    for path, (module, help_) in COMMANDS.items():
        if len(path) == 1:
            p = subs.add_parser(path[0], help=help_)
        else:
            if path[0] not in groups:
                g = subs.add_parser(path[0], help=f"{path[0]} commands")
                g.set_defaults(_group=g)  # `kame codec` alone: this group's help, not the top level's
                _common_options(g, "_plugin_group")  # also between the group and the command (`kame bench -v step`)
                groups[path[0]] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
            p = groups[path[0]].add_parser(path[1], help=help_)
        p.set_defaults(_module=module, _path=path)
        _common_options(p)
        leaves[path] = p
    # Only import the module of the command actually invoked (to add its arguments).
    words = _words(argv)
    for path, p in leaves.items():
        if tuple(words[: len(path)]) == path:
            try:
                importlib.import_module(COMMANDS[path][0]).add_arguments(p)
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith("kame"):
                    p.set_defaults(_missing=f"'kame {' '.join(path)}' is not implemented yet")
                else:
                    raise
    return parser, leaves


PLUGIN_HELP = ("import MODULE (a module on the Python path, or a .py file) first: its kame.registry.register() "
               "calls add component schemes; repeatable (also: env KAME_PLUGINS=a,b; installed packages' "
               "'kame.components' entry points)")


# Where a subparser keeps its --plugin values: a command group's (`kame bench --plugin x.py step`), then
# the command's (`kame run ... --plugin x.py`); the top level's parse puts them after its own, in this order.
PLUGIN_DESTS = ("_plugin_group", "_plugin_after")


def _common_options(p: argparse.ArgumentParser, plugin_dest: str = "_plugin_after") -> None:
    """-v and --plugin also after the command (`kame serve -v`, `kame run ... --plugin x.py`), or
    between a group and its command (``plugin_dest`` "_plugin_group"). SUPPRESS: absent, -v keeps
    the top level's value; --plugin's are kept apart (PLUGIN_DESTS: a subparser's own list would
    replace the top level's), then put after those in ``args.plugin`` (_Parser.parse_known_args)."""
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    p.add_argument("--plugin", action="append", dest=plugin_dest, default=argparse.SUPPRESS, metavar="MODULE",
                   help=PLUGIN_HELP)


def _word_positions(argv: list[str]) -> list[int]:
    """Where in ``argv`` the words are that name the command ("serve", "bench step"), and its positionals."""
    return [i for i, a in enumerate(argv) if not a.startswith("-") and (i == 0 or argv[i - 1] != "--plugin")]


def _words(argv: list[str]) -> list[str]:
    return [argv[i] for i in _word_positions(argv)]


def _owner(parser: argparse.ArgumentParser, leaves: dict, args, argv: list[str], first: str):
    """The parser whose part of ``argv`` holds the unrecognized argument ``first``: the command's
    (`kame run x.wav --tial 3`), its group's (`kame bench --bogus step`) or the top level's."""
    path = getattr(args, "_path", None) or ()
    levels = [parser, *([args._group] if len(path) == 2 else []), leaves[path]] if path \
        else [parser, *([args._group] if hasattr(args, "_group") else [])]
    # its last place (was: its first, so a stray word that is also the command's name, as the
    # "run" of `kame run -o y x.wav run`, was said by the top level's parser)
    at = len(argv) - 1 - argv[::-1].index(first) if first in argv else len(argv)
    return levels[sum(1 for i in _word_positions(argv)[: len(levels) - 1] if i < at)]


class _Marked:
    """A standard stream (sys.stdout, sys.stderr) whose failed writes are marked as its own
    (``exc.kame_stream``: "stdout" or "stderr"), so that main tells a full disk or a closed pipe
    there from any other OSError of a command; all else is the stream's."""

    def __init__(self, stream, name: str) -> None:
        self._stream, self._name = stream, name

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as exc:
            exc.kame_stream = self._name
            raise

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            exc.kame_stream = self._name
            raise

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _mark_streams() -> tuple:
    """sys.stdout and sys.stderr as they were, after making them ``_Marked`` and unable to raise
    UnicodeEncodeError: a character the encoding lacks (PYTHONIOENCODING=ascii, a Unicode file
    name or question) is written as a backslash escape (was: a traceback after the whole run)."""
    saved = (sys.stdout, sys.stderr)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or isinstance(stream, _Marked):  # (None: closed, e.g. `>&-`)
            continue
        if getattr(stream, "errors", None) == "strict":
            with contextlib.suppress(AttributeError, ValueError, OSError):  # (not a TextIOWrapper, closed)
                stream.reconfigure(errors="backslashreplace")
        setattr(sys, name, _Marked(stream, name))
    return saved


def _output_failed(exc: OSError, stream) -> int:
    """The exit status when writing a standard stream failed. Python's docs (signal, "Note on
    SIGPIPE") say: point the stream's descriptor at devnull, so the interpreter's last flush of
    what is still buffered does not fail again ("Exception ignored ... BrokenPipeError", exit
    120). A closed pipe (`kame run ... | head -1`: the reader has all it wanted) is a quiet exit
    with 141, the status a shell gives a program SIGPIPE ended (`yes | head -1`; scripts under
    `set -o pipefail` test for it), not 1, kame's error status; any other error (a full disk:
    `> /dev/full`, a quota) is one line on stderr and status 1. The files the command wrote
    before are whole (kame's writers write a file whole or not at all)."""
    with contextlib.suppress(AttributeError, ValueError, OSError):
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    if exc.errno == errno.EPIPE:
        return 141
    if exc.kame_stream == "stdout":
        _error(f"cannot write to standard output: {exc.strerror or exc}")
    return 1


def _error(message: str) -> None:
    """``kame: error: message`` on stderr, if it can be written: one write, line and newline (print
    writes them apart on Python's unbuffered stderr, so the lines of torchrun's processes, which share
    it, came out joined: "...stoppedkame: error: ...")."""
    say(f"kame: error: {message}")


def say(line: str, file=None) -> None:
    """``line`` and its newline in one write on ``file`` (None: stderr), flushed; a closed or
    failing stream is ignored (the exit status says it). The lines a command says as it stops
    ("interrupted: ...", "terminated (SIGTERM): ...") go through here too (print's two writes let
    another process's line, sharing the stream, come between them)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        stream = sys.stderr if file is None else file
        stream.write(f"{line}\n")
        stream.flush()


def main(argv: list[str] | None = None) -> int:
    saved = _mark_streams()
    try:
        try:
            status = _main(argv)
        except SystemExit as exc:  # (argparse's --help and --version: 0, its usage errors: 2)
            _flush_streams(failed=exc.code not in (0, None))
            raise
        except BaseException:  # (its own error goes on: a flush failing now must not replace it)
            _flush_streams(failed=True)
            raise
        _flush_streams(failed=status != 0)
        return status
    except OSError as exc:
        if getattr(exc, "kame_stream", None) is None:
            raise
        return _output_failed(exc, saved[0] if exc.kame_stream == "stdout" else saved[1])
    finally:
        sys.stdout, sys.stderr = saved


def _flush_streams(failed: bool) -> None:
    """Flush what stdout and stderr still buffer. Its failure is raised (main says it as any
    other output error), unless the command failed already (``failed``: an exception, a status
    other than 0): then its own error or status stays, and a flush failing now is ignored."""
    for stream in (sys.stdout, sys.stderr):
        if failed:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()
        elif stream is not None:
            stream.flush()


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _start(argv)
    except KeyboardInterrupt:  # Ctrl-C while kame starts (building the parser imports the command's module: a
        # second or more): exit 130 as later on (was: a 30-line traceback, then a silent exit)
        return _interrupted(argv, " (Ctrl-C) before it started; nothing was done")


def _start(argv: list[str]) -> int:
    if _words(argv)[:1] != ["serve"]:
        return _run(argv)
    import signal

    from .runtime.signals import stopped_early  # (no asyncio: installed before any heavy import)

    # `kame serve`: a SIGTERM or SIGHUP from here on, before its server's loop handles them (building the
    # parser imports the command's modules, a second or more), is recorded, and kame.server.app.main stops
    # at its next checkpoint, a normal stop, exit 0 (was: a kill, status 143 or 129). Python's own start-up
    # and the import of kame.cli (about 0.1 s) come before: a signal then is still a kill (ignored by a
    # container's PID 1).
    with stopped_early(signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])):
        return _run(argv)


def _run(argv: list[str]) -> int:
    import logging

    parser, leaves = _build_parser(argv)
    args, rest = parser.parse_known_args(argv)
    if rest:  # said by the command's parser, with its usage (was: the top level's, `kame: error: ...`)
        _owner(parser, leaves, args, argv, rest[0]).error(f"unrecognized arguments: {' '.join(rest)}")
    from .backend.childproc import LOG_FORMAT

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=LOG_FORMAT)
    if not args.verbose:  # faster-whisper logs every decode ("Processing audio with duration ...") at INFO
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
        # torch sets its own loggers to WARNING when its import ends; one cut short (Ctrl-C during a load)
        # left them at the root's INFO, and its exit hook printed "FakeTensor cache stats: ..." (TORCH_LOGS still rules)
        logging.getLogger("torch").setLevel(logging.WARNING)
    if not getattr(args, "_module", None):
        with contextlib.suppress(OSError):  # (a usage error: its status 2 stays, as a failed command's)
            getattr(args, "_group", parser).print_help()
        return 2
    if getattr(args, "_missing", None):
        print(f"kame: {args._missing}", file=sys.stderr)
        return 2
    from .backend.childproc import command_starts
    from .runtime.interrupt import QuitAtOnce

    command_starts()  # (a kame serve run before, in this process, had its children's release marked final)
    try:
        try:
            if args.plugin:
                from . import registry

                registry.load_plugins(args.plugin)
            status = int(importlib.import_module(args._module).main(args) or 0)
        except KameError as exc:
            _error(str(exc))
            status = 1
        except KeyboardInterrupt as exc:  # (one the command did not take: Ctrl-C before its handler, a second one)
            status = _interrupted(argv, exc=exc)
            if isinstance(exc, QuitAtOnce):  # (a second signal: nothing more, the children left to the exit hook)
                return status
        except OSError as exc:  # an output error, a failure (main says it: "kame: error: cannot write to ..."):
            if getattr(exc, "kame_stream", None) is not None:  # its children stopped first (was: by the exit hook)
                _released(1, _command(argv))
            raise
        return _released(status, _command(argv))  # (a command that raised too: was left to the exit hook)
    except KeyboardInterrupt as exc:  # (a second signal while the children stop)
        return _interrupted(argv, exc=exc)


def _released(status: int, command: str) -> int:
    """After any command (``status`` returned, or 1 / 130 for what it raised), the children its
    agents share (the embedded LLM's, pocketsphinx's: childproc.shared_stops) are stopped here, not
    in the interpreter's exit hooks (there a Ctrl-C printed "Exception ignored in atexit callback"
    with a traceback, a SIGTERM killed the process, nothing said); none after a command that
    stopped them itself as its last step (kame serve). After a command a signal stopped (130, 143)
    a signal here is the second: it quits at once (QuitAtOnce, said by _run). After one that ended
    otherwise, ``status`` is returned whatever comes: a SIGTERM waits for the stops; a Ctrl-C, or a
    second SIGTERM, cuts the one under way short, said in one line ("kame run: interrupted while the
    back-end's child processes stopped; the command had ended"), and those not reached yet are
    stopped next, where a signal quits at once (they are left to their exit hooks)."""
    from .backend.childproc import shared_stops
    from .runtime.interrupt import QuitAtOnce, after_stop, again, stopped_by

    stops = shared_stops()
    if not stops:  # (nothing to stop: a command that started no shared child, or stopped them itself)
        return status
    stopped = status in (130, 143)

    def stop_rest():  # (each taken off first: a signal leaves the list holding the ones not reached)
        while stops:
            stops.pop(0)()

    try:
        with after_stop(stopped):
            stop_rest()
        return status
    except KeyboardInterrupt as exc:
        if stopped:  # (inside after_stop(True) every signal is a QuitAtOnce)
            raise
        name = getattr(exc, "signal", "SIGINT")
    rest = f" (stopping the others: {again(name)})" if stops else ""
    say(f"{command}: {stopped_by(name)} while the back-end's child processes stopped; the command had ended{rest}")
    try:
        with after_stop(True):
            stop_rest()
    except QuitAtOnce as exc:  # (the rest: left to their exit hooks)
        say(f"{command}: {exc.said}")
    return status


def _command(argv: list[str]) -> str:
    """The command ``argv`` names: "kame run", "kame data synth"."""
    words = _words(argv)
    path = next((p for p in sorted(COMMANDS, key=len, reverse=True) if tuple(words[: len(p)]) == p), ())
    return " ".join(("kame", *path))


def _interrupted(argv: list[str], when: str = "", exc: BaseException | None = None) -> int:
    """said_interrupted for the command ``argv`` names ("kame run")."""
    return said_interrupted(_command(argv), exc, when)


def said_interrupted(command: str, exc: BaseException | None = None, when: str = "") -> int:
    """Exit status 130 after a Ctrl-C that reached kame's main, said on stderr in one line (was: a
    silent exit): "kame run: interrupted", then ``when`` (how and when, if known). A second signal
    that quit at once (``exc`` a kame.runtime.interrupt.QuitAtOnce) is said by its own words, with
    its status: "kame run: terminated (SIGTERM) again: quit at once, nothing more written", 143
    (was: "interrupted", 130)."""
    say(f"{command}: {getattr(exc, 'said', 'interrupted' + when)}")  # (a closed stderr: the status says it)
    return getattr(exc, "status", 130)


if __name__ == "__main__":
    sys.exit(main())
