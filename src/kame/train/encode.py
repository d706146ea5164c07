"""`kame data encode`: the codes cache of a whole set, made once, in several processes.

    kame data encode data/gsm8k                               # the embedded codec, a process per CPU
    kame data encode data/gsm8k --codec mimi --codebooks 8 --tokenizer tokenizer_spm_32k_3.model  # Moshi/KAME's

Encoding the audio is the costly part of a training set (the embedded codec: ~1.3 s per 7.5 s
dialogue on one core) and `kame train` otherwise does it at its start, in its own processes. This
writes each dialogue's codes.npz (kame.train.codes.write_codes) beforehand with ``--jobs``
worker processes of one torch thread each, so a set of tens of thousands of dialogues is
encoded at the machine's width once, and every later run reads the cache. A dialogue whose
codes.npz this codec (fingerprint, codebook count) made from its audio.wav is skipped; one made by
another codec or from other audio is encoded again. ``--codebooks``: what the front-end reads
and generates (``max(n_user_q, dep_q)``: 8 for Moshi and KAME), default the codec's own; `kame
train` re-encodes a cache with another count. ``--jobs``: default the CPUs this process may use, at most 8.
A dialogue that fails (its audio, or a broken dialogue.json beside a codes.npz) is reported and
the others go on (exit code 1). So is every dialogue whose oracle `kame train` would refuse
(kame.train.examples.check_oracle_tokens): a prediction with text that no ids follow; with
``--tokenizer PATH`` (the front-end's SentencePiece model) also ids of another tokenizer or outside
its vocabulary (without it these are not checked: a set made for another front-end's tokenizer is
fine). Its codes are made all the same (the audio is fine). A worker process that dies (out of memory) stops the command
with an error; the codes written by then stay, so running it again goes on from there. Ctrl-C
or SIGTERM: the dialogues not handed to a worker are dropped, those handed to one finished and
counted, then exit 130 (143); the workers ignore the terminal's Ctrl-C (the command stops them)
and end with the command.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from pathlib import Path

from .data import DataError

log = logging.getLogger(__name__)

MAX_DEFAULT_JOBS = 8  # each worker holds its own codec (for Mimi, its weights)
SAME_PROBLEM_SHOWN = 3  # kame data encode: dialogues listed per oracle problem (a set made with another tokenizer: all)
_worker: dict = {}  # the codec each worker process made once


def make_codec(spec: str, codebooks: int | None):
    """The codec of ``spec`` coding with ``codebooks`` (None: its own count); it must have a
    fingerprint, or its cache could not be checked."""
    from .. import registry
    from ..cliargs import naming
    from ..errors import ConfigError

    with naming("--codec"):  # (the option kame data encode's user typed)
        codec = registry.create("codec", spec)
    if codebooks is not None and codebooks != codec.num_codebooks:
        try:
            codec.set_num_codebooks(codebooks)
        except ConfigError as exc:
            raise ConfigError(f"--codebooks {codebooks}: codec {spec!r} refuses it ({exc}); give the front-end's "
                              f"max(n_user_q, dep_q) (8 for Moshi/KAME) or leave it out (the codec's own)") from None
    if getattr(codec, "fingerprint", None) is None:
        raise DataError(f"data encode: codec {spec!r} has no fingerprint (random weights?): its codes cannot be "
                        f"cached; kame train encodes such a codec's on the fly")
    return codec


def _start_worker(*args) -> None:
    """A worker process's start: it ends when the command's process does, however that ended (was: a
    SIGTERM or SIGKILL to the command left its workers running, ~265 MB each, encoding what was queued,
    then waiting forever), then makes its codec."""
    from ..backend.childproc import leave_with_parent

    leave_with_parent()
    _init(*args)


def _init(spec: str, codebooks: int | None, plugins: list[str]) -> None:
    import torch

    from ..registry import load_plugins

    torch.set_num_threads(1)
    load_plugins(plugins)
    _worker["codec"] = make_codec(spec, codebooks)
    _worker["spec"] = spec


def encode_one(folder: str) -> tuple[str, float, str]:
    """(folder, seconds of audio encoded, error or "") for one dialogue, in a worker."""
    from .codes import write_codes
    from .data import read_dialogue

    try:
        d = read_dialogue(folder)
        write_codes(d, _worker["codec"], spec=_worker["spec"])
        return folder, d.duration_s, ""
    except Exception as exc:  # noqa: BLE001 -- one dialogue's failure is reported, the others go on
        return folder, 0.0, f"{type(exc).__name__}: {exc}"


def encode_set(folders: list[Path], spec: str, codebooks: int | None, jobs: int = 1, plugins: list[str] = (),
               echo=print, codec=None, done: list | None = None) -> list[tuple[str, float, str]]:
    """Every folder's codes.npz, ``jobs`` processes at a time (1: in this process, with ``codec``
    when given, else one made here); a result per folder, in the order they finished (also
    appended to ``done``, which keeps them when Ctrl-C ends the run: then every one a worker
    finished, those it was handed before the interrupt and finished after it too, in ``folders``'
    order). A worker process that dies is a DataError (the codes written by then stay)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    from ..runtime.signals import handling

    args = (spec, codebooks, list(plugins))
    results: list[tuple[str, float, str]] = [] if done is None else done

    def said(r) -> None:
        results.append(r)
        n = len(results)
        if r[2]:
            echo(f"failed: {r[0]}: {r[2]}")
        if n == 1 or n == len(folders) or n % max(1, len(folders) // 10) == 0:
            echo(f"encoded {n}/{len(folders)}")

    if jobs == 1:
        if codec is None:
            _init(*args)
        else:  # (the caller's codec: no second make_codec, for Mimi no second load of its weights)
            _worker.update(codec=codec, spec=spec)
        try:
            for f in folders:
                said(encode_one(str(f)))
        finally:
            _worker.clear()
        return results
    lost = 0
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_start_worker, initargs=args) as pool:
        # (the workers, started by submit, inherit an ignored SIGINT: the terminal's Ctrl-C reaches the
        # whole group, and this process stops the pool; was: a traceback per worker importing torch)
        with handling(signal.SIGINT, signal.SIG_IGN):
            futures = [pool.submit(encode_one, str(f)) for f in folders]
        try:
            for fut in as_completed(futures):
                try:
                    r = fut.result()
                except BrokenProcessPool:  # (every unfinished one; those finished before are still said)
                    lost += 1
                    continue
                said(r)
        except BaseException:
            pool.shutdown(cancel_futures=True)  # (waits for those begun or already handed to a worker)
            # every dialogue encoded, those that finished after the interrupt too (was: only those said
            # by then, so "N of M dialogues encoded" undercounted the codes.npz written)
            results[:] = [f.result() for f in futures if f.done() and not f.cancelled() and f.exception() is None]
            raise
    if lost:
        done = sum(1 for r in results if not r[2])
        raise DataError(f"data encode: a worker process died (killed, likely out of memory: try fewer --jobs); "
                        f"{done} of {len(folders)} dialogues were encoded before and their codes.npz stay, "
                        f"{lost} were not: run the command again to go on from there")
    return results


def add_arguments(p) -> None:
    p.add_argument("manifest", help="the set: a manifest (train.jsonl) or the folder holding it (kame data synth's -o)")
    p.add_argument("--codec", default="embedded", help="codec spec (default embedded; mimi for Moshi/KAME)")
    p.add_argument("--codebooks", type=int, default=None,
                   help="codebooks to code with: the front-end's max(n_user_q, dep_q) (8 for Moshi/KAME); "
                        "default the codec's own")
    from ..cliargs import at_least, usable_cores

    n = min(usable_cores(), MAX_DEFAULT_JOBS)  # (each worker holds its own codec: Mimi's weights too)
    p.add_argument("--tokenizer", default=None, metavar="PATH",
                   help="SentencePiece model the front-end to train uses (Moshi/KAME: its tokenizer .model): each "
                        "dialogue's oracle ids are checked against it (its sha256, its vocabulary); without it only "
                        "text without ids is checked")
    p.add_argument("--jobs", type=at_least(1), default=n,
                   help=f"worker processes, one torch thread each (default: the CPUs this process may use, at most "
                        f"{MAX_DEFAULT_JOBS}: {n} here)")


def main(args) -> int:
    import torch

    from ..cliargs import counted
    from ..paths import sweep_temporaries
    from ..runtime.interrupt import exit_status, sigterm_as_ctrl_c, stopped_by
    from .batching import cached_dialogue, manifest_entries
    from .data import DIALOGUE_FILES, read_dialogue
    from .datacmd import tokenizer_of

    path, entries = manifest_entries(args.manifest, command="data encode")
    torch.set_num_threads(1)
    # (no --tokenizer: only what needs none is checked; was: kame's default, refusing every set made for
    # another front-end's tokenizer. Loaded before the codec: a bad PATH said before Mimi's weights load)
    tok = tokenizer_of(args.tokenizer) if args.tokenizer else None
    codec = make_codec(args.codec, args.codebooks)  # (a bad spec or count fails here, before any worker)
    # (what a run killed outright left where this one writes: the dialogue folders)
    sweep_temporaries("kame data encode", [(e.path, DIALOGUE_FILES) for e in entries])
    todo, broken, refused = [], [], 0
    kinds: dict[str, int] = {}  # an oracle problem, its dialogue left out -> how many have it
    for e in entries:
        d = None  # (read once here for the cache and the oracle checks; was: up to twice more)
        try:
            with contextlib.suppress(DataError):  # (said below beside a codes.npz, else by the encoding)
                d = read_dialogue(e.path, audio=False)
            if not cached_dialogue(e.path, codec, lambda s: log.info("%s", s), d=d):
                todo.append(e.path)
        except Exception as exc:  # noqa: BLE001 -- e.g. a broken dialogue.json beside a codes.npz: reported
            broken.append((str(e.path), 0.0, f"{type(exc).__name__}: {exc}"))
            print(f"failed: {e.path}: {broken[-1][2]}", flush=True)
            continue
        problem = oracle_problem(e.path, d, tok) if d is not None else None
        if problem:
            refused += 1
            kind = problem.replace(str(e.path), "")  # (a whole set of another tokenizer: its line said 3 times)
            kinds[kind] = kinds.get(kind, 0) + 1
            if kinds[kind] <= SAME_PROBLEM_SHOWN:
                print(f"oracle: {e.path}: {problem}", flush=True)
    cached = len(entries) - len(todo) - len(broken)
    jobs = max(1, min(args.jobs, len(todo)))  # (no worker, for Mimi no weights load, beyond the work)
    print(f"{counted(len(entries), 'dialogue')} in {path}: {cached} cached already, {len(todo)} to encode "
          f"with {args.codec} ({counted(codec.num_codebooks, 'codebook')}), {counted(jobs, 'process', 'processes')}",
          flush=True)
    t0 = time.monotonic()
    results: list = []
    stopped: list[str] = []
    try:  # (SIGTERM: as Ctrl-C; was: the default, the workers left running)
        with sigterm_as_ctrl_c() as stopped:
            # (the workers import the --plugin modules too: a plugin's codec scheme is theirs as well;
            # KAME_PLUGINS and entry points they find themselves)
            if todo:
                encode_set(todo, args.codec, args.codebooks, jobs, getattr(args, "plugin", []),
                           echo=lambda s: print(s, flush=True), codec=codec, done=results)
    except KeyboardInterrupt:
        name = stopped[0] if stopped else "SIGINT"
        encoded = sum(1 for r in results if not r[2])
        rest = "; run the same command again to go on" if encoded < len(todo) else " (all of them)"
        from ..cli import say

        say(f"\n{stopped_by(name)}: {encoded} of {counted(len(todo), 'dialogue')} encoded{rest}")  # (one write)
        # (said: was raised again for exit 130, and kame's main said "kame data encode: interrupted" too)
        return exit_status(name)
    wall = time.monotonic() - t0
    failed = [r for r in results if r[2]]
    audio = sum(r[1] for r in results)
    print("| dialogues | cached already | encoded | failed | audio (h) | wall (s) | audio s per wall s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {len(entries)} | {cached} | {len(results) - len(failed)} | {len(failed) + len(broken)} | "
          f"{audio / 3600:.3f} | {wall:.0f} | {audio / wall if results else 0:.1f} |")
    if refused:
        which = "with this tokenizer" if tok is not None else "(text without ids)"
        unshown = sum(max(0, n - SAME_PROBLEM_SHOWN) for n in kinds.values())
        more = f"; {unshown} more with the same problem as one shown, not listed" if unshown else ""
        print(f"{refused} of the {len(entries)} dialogues have an oracle kame train refuses {which} "
              f"(the lines 'oracle: ...' above say what to do{more}): fix them before training")
    return 1 if failed or broken or refused else 0


def oracle_problem(folder: Path, d, tokenizer) -> str | None:
    """What `kame train` would refuse in the oracle of ``d``, the dialogue read from ``folder``, with
    ``tokenizer`` (check_oracle_tokens; None: text without ids only), else None."""
    from .examples import check_oracle_tokens

    try:
        check_oracle_tokens(d, tokenizer, f"dialogue {folder}")
    except DataError as exc:
        return str(exc)
    return None
