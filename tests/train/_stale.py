"""Temporary files as a writer killed outright leaves them, for the tests that each command
removes those left where it writes (kame.paths.sweep_temporaries), and only those."""

from __future__ import annotations

import os
import time
from pathlib import Path

HEX = "0123456789ab"  # (kame's temporaries: .NAME.RANDOM.tmp, RANDOM 12 lowercase hex digits)


def plant(folder: Path, name: str) -> tuple[list[Path], list[Path]]:
    """Beside the file ``name`` in ``folder``: its temporary as a writer killed an hour ago left it
    (stale: to be removed), and what must stay (kept): one as fresh (a run under way writes it),
    and an hour old, a user's files with names like it and kame's temporary of another file."""
    folder.mkdir(parents=True, exist_ok=True)
    stale = [folder / f".{name}.{HEX}.tmp"]
    kept = [folder / f".{name}.ba9876543210.tmp", folder / f".{name}.{HEX}.tmp.bak",
            folder / f".{name}.{HEX.upper()}.tmp", folder / f"{name}.{HEX}.tmp", folder / f".{name}.{HEX[:8]}.tmp",
            folder / f".notes.txt.{HEX}.tmp"]
    for p in stale + kept:
        p.write_bytes(b"x" * 1000)
    hour_ago = time.time() - 3700
    for p in stale + kept[1:]:
        os.utime(p, (hour_ago, hour_ago))
    return stale, kept


def check_swept(command: str, stale: list[Path], kept: list[Path], err: str) -> None:
    """``stale`` removed and said in one line of ``err`` (stderr), ``kept`` still there."""
    assert not [p for p in stale if p.exists()], err
    assert all(p.exists() for p in kept), [p for p in kept if not p.exists()]
    said = [line for line in err.splitlines() if "temporary file" in line]
    assert len(said) == 1 and said[0].startswith(f"{command}: removed {len(stale)} temporary file"), err
    assert all(str(p) in said[0] for p in stale), said
