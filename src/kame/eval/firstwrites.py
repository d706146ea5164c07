"""What a kame eval command makes in its output folder before its first result, undone when it
fails before one (a dead judge, an agent that cannot load, Ctrl-C while it loads): a fresh OUT is
removed again (was: OUT/eval.json and an empty OUT/runs/ left, a folder that looked like a started
evaluation), and an OUT used before gets back the settings file it had, byte for byte.

    first = FirstWrites(out, files=["eval.json"], folders=["runs"])  # before anything is written in OUT
    ...                                                             # OUT made
    first.lock("eval mtbench")                                      # held: OUT as found, looked at
    ...                                                             # eval.json written, runs/ made
    first.keep()                                                    # the first question starts: kept
    first.undo()                                                    # (or: failed before it) undone

    return FirstWrites(out, files=["eval.json"]).run(main_body, args)  # the same: main_body(args, first)

``lock`` (called once OUT is made, before anything is written in it) holds OUT/.lock, kame train's
(kame.train.checkpoint.out_lock), until ``run`` returns: a second run into the same OUT is refused
(was: two runs interleaved their lines in OUT/results.jsonl); a lock its process left (gone) is
taken over. A fresh OUT/.lock goes with the undo. ``files`` and ``folders`` are looked at only
then: without ``lock`` the undo restores none of them, only removes OUT and its parents made, if
empty (kame bench latency's use: no files).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..errors import KameError
from ..paths import write_replacing


class FirstWrites:
    """``out``'s state before a run writes into it: which of ``out`` and its missing parents are
    missing when the run starts, and, once ``lock`` holds OUT/.lock (nothing is written in OUT
    before), which of its subfolders ``folders`` are missing and the bytes of its files ``files``
    (None: missing). ``undo`` puts each file back as it was (a new one removed) and removes the
    folders made, if empty, unless ``keep`` was called; it never raises (a file that cannot be read
    now is left alone) and is done once. ``kept``: whether ``keep`` was called (an undo leaves it
    False). A run ``lock`` refused leaves everything in OUT to the live run."""

    def __init__(self, out: str | Path, files=(), folders=()) -> None:
        out = Path(out)
        try:
            self._made = _to_make(out, ())
        except OSError:  # (an OUT that cannot be looked at: check_output_folder says why; nothing made)
            self._made = []
        self._names, self._folders = files, folders
        self._files: dict[Path, bytes | None] = {}  # (none before the lock: nothing is written in OUT before it)
        self.kept = False
        self._undone = False
        from ..train.checkpoint import LOCK

        self._lock = out / LOCK
        self._lock_was = True  # (never removed by undo unless lock made it)
        self._locked = False
        self._held = contextlib.ExitStack()  # (the lock: let go when run returns)

    def lock(self, command: str, harm: str = "interleave their results") -> None:
        """Hold OUT/.lock until ``run`` returns (OUT made: check_output_folder); ``command``
        ("eval mtbench") names the refused one, ``harm`` what two runs in one OUT do (kame eval
        follow's overwrite each other's audio and results: was said to interleave them). A
        ConfigError naming the pid of the run that holds it (out_lock's, in ``command``'s words).
        Held, OUT is looked at as this run finds it (was: when the run started, so a live run's
        eval.json written and its run ended meanwhile were removed by this run's undo, as "not there
        before"); refused, nothing in it is this run's (was: a live run's empty OUT/runs, made after
        this run started, removed by its undo)."""
        from ..errors import ConfigError
        from ..train.checkpoint import out_lock

        out = self._lock.parent
        try:
            lock_was = self._lock.exists()
        except OSError:
            lock_was = True
        try:
            self._held.enter_context(out_lock(out, command, harm, ""))
        except ConfigError:
            self._made = []  # (OUT holds the live run's .lock: what is in it is that run's)
            raise
        self._locked, self._lock_was = True, lock_was
        with contextlib.suppress(OSError):
            self._made += _to_make(out, self._folders)  # (OUT is there now: its subfolders missing)
        for name in self._names:
            path = out / name
            try:
                self._files[path] = path.read_bytes() if path.is_file() else None
            except OSError:  # (unreadable now: left alone by undo)
                pass

    def run(self, body, *args):
        """``body(*args, self)``; if it raises anything (a failure, Ctrl-C, SystemExit) before
        ``keep``, ``undo`` first. A command's main: what it made before its first result goes."""
        try:
            return body(*args, self)
        except BaseException:
            self.undo()
            raise
        finally:
            self._held.close()

    def keep(self) -> None:
        """The run has begun its work: what it wrote stays, whatever happens next."""
        self.kept = True

    def undo(self) -> None:
        if self.kept or self._undone:  # (was: undo set kept, so a SIGTERM after it said "kept in OUT")
            return
        self._undone = True
        for path, data in self._files.items():
            with contextlib.suppress(OSError, KameError):
                if data is None:
                    path.unlink(missing_ok=True)
                elif not path.is_file() or path.read_bytes() != data:  # (whole or not at all, as it was written)
                    write_replacing(path, lambda tmp, data=data: tmp.write_bytes(data))
        # (made by this run: goes, the lock still held till run returns. A third run that opened the old file
        # just before could then hold it beside a fourth on a new .lock: microseconds, three runs at once)
        if self._locked and not self._lock_was:
            with contextlib.suppress(OSError):
                self._lock.unlink(missing_ok=True)
        for folder in reversed(self._made):  # (the innermost first; one not empty: it and those above it stay)
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                break


def _to_make(out: Path, folders) -> list[Path]:
    """The folders a mkdir(parents=True) of ``out`` and then of its subfolders ``folders`` makes,
    outermost first. A ".." after a folder to be made is that folder's parent (one made is no
    symlink): `-o x/../y` makes x and y, if missing (was: "x/.." listed, whose rmdir failed, so x
    stayed; and "x/../y" counted as made while x was missing, so an empty y there before was removed)."""
    made, cur = [], Path(out.anchor or ".")
    for part in (*out.parts[bool(out.anchor):], *folders):
        cur = cur.parent if part == ".." and cur in made else cur / part
        if part != ".." and cur not in made and not cur.exists():
            made.append(cur)
    return made
