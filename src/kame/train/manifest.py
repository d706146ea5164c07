"""The JSONL manifest of a training set (docs/data.md, "The manifest"): one line per dialogue
folder, with its length, word and prediction counts, hint levels and the sha256 of its
dialogue.json, so a set is listed without reading its audio and kame train's resume sees a
dialogue changed since the manifest was written.

    write_manifest("data/train.jsonl", ["data/d0001", ...])
    for entry in read_manifest("data/train.jsonl"): read_dialogue(entry.path)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from ..paths import file_sha256, read_text, text_lines, write_replacing
from .data import META, DataError, read_dialogue_and_sha256


@dataclass
class ManifestEntry:
    path: Path  # the dialogue's folder (resolved against the manifest's folder)
    duration: float  # seconds
    frames: int
    user_words: int
    agent_words: int
    predictions: int  # oracle resets
    hints: list[int]  # the hint levels of its predictions (sorted, unique; real back-ends: none)
    meta_sha256: str | None = None  # of its dialogue.json: the manifest's own sha256 changes with any dialogue's oracle


def manifest_entry(folder: str | Path) -> ManifestEntry:
    d, meta_sha256 = read_dialogue_and_sha256(folder, audio=False)
    return ManifestEntry(Path(folder), d.duration_s, d.frames, len(d.words_of("user")), len(d.words_of("agent")),
                         sum(ev.event == "reset" for ev in d.oracle),
                         sorted({ev.hint for ev in d.oracle if ev.hint is not None}), meta_sha256)


def write_manifest(path: str | Path, folders: Iterable[str | Path],
                   fallback: dict[Path, ManifestEntry] | None = None) -> list[ManifestEntry]:
    """A JSONL manifest, one dialogue a line: {"path" (relative to the manifest's folder when
    inside it), "duration", "frames", "user_words", "agent_words", "predictions", "hints",
    "meta_sha256" (of its dialogue.json: a new oracle changes the manifest's own sha256, which
    kame train's resume checks)}. Each folder is checked (read_dialogue without the samples) first;
    one that cannot be read is a DataError, unless ``fallback`` holds an entry for it (its line as
    it was, kame data oracle's): that entry is listed with no meta_sha256."""
    path = Path(path)
    entries = []
    for f in folders:
        try:
            entries.append(manifest_entry(f))
        except DataError:
            if fallback is None or Path(f) not in fallback:
                raise
            entries.append(replace(fallback[Path(f)], meta_sha256=None))
    base = path.parent.resolve()
    lines = []
    for e in entries:
        p = e.path.resolve()
        rel = p.relative_to(base) if p.is_relative_to(base) else p
        lines.append(json.dumps({"path": rel.as_posix(), "duration": e.duration, "frames": e.frames,
                                 "user_words": e.user_words, "agent_words": e.agent_words,
                                 "predictions": e.predictions, "hints": e.hints, "meta_sha256": e.meta_sha256}))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_replacing(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in lines)), error=DataError)
    return entries


def read_manifest(path: str | Path, *, check: bool = True) -> list[ManifestEntry]:
    """The manifest's entries, paths resolved against its folder. ``check``: every folder must hold
    a dialogue.json (a DataError naming the line otherwise)."""
    path = Path(path)
    _, text = read_text(path, f"manifest {path}", "give a manifest (kame data synth's OUT/train.jsonl)", DataError)
    lines = text_lines(text)  # (an editor's line numbers: paths.text_lines)
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            p = Path(d["path"])
            e = ManifestEntry(p if p.is_absolute() else path.parent / p, float(d["duration"]), int(d["frames"]),
                              int(d.get("user_words", 0)), int(d.get("agent_words", 0)),
                              int(d.get("predictions", 0)), [int(h) for h in d.get("hints", [])],
                              d.get("meta_sha256"))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}:{n}: not a manifest line ({{\"path\": ..., \"duration\": ..., \"frames\": ...}}): "
                            f"{exc!r}") from None
        if check and not (e.path / META).is_file():
            raise DataError(f"{path}:{n}: {e.path} holds no {META}")
        out.append(e)
    return out


def changed_since_listed(entries: Iterable[ManifestEntry], read: dict | None = None) -> list[ManifestEntry]:
    """The entries whose dialogue.json is not the one the manifest listed: its sha256 is not the
    line's ``meta_sha256`` (a `kame data oracle` stopped before it wrote the manifest again, a
    dialogue edited by hand), or it is gone. A line without one (an older manifest's, or a dialogue
    that could not be read when it was written) is not checked. Without ``read`` cheap: only the
    small JSON files are hashed. ``read``: a dict that gets {folder: Dialogue (read without its samples, as
    read_dialogue does)} of the dialogues found as listed, so that kame train uses what was checked
    (its dialogue.json read once, its audio.wav's header too, as read_dialogue does)."""
    changed = []
    for e in entries:
        if e.meta_sha256 is None:
            continue
        d = None
        try:
            if read is not None:
                try:
                    d, sha = read_dialogue_and_sha256(e.path, audio=False)
                except DataError:  # (not a dialogue now: only its hash is compared; training says what is wrong)
                    sha = file_sha256(e.path / META)
            else:
                sha = file_sha256(e.path / META)
        except OSError:
            sha = None
        if sha != e.meta_sha256:
            changed.append(e)
        elif d is not None:
            read[e.path] = d
    return changed


def unhashed_note(entries: list[ManifestEntry], manifest: str | Path) -> str | None:
    """None when every line of ``manifest`` (its ``entries``) has a meta_sha256; else what that costs,
    for kame train --resume to say (changed_since_listed cannot see an edit of such a line's dialogue)."""
    missing = [e for e in entries if e.meta_sha256 is None]
    if not missing:
        return None
    some = "its lines have" if len(missing) == len(entries) else f"{len(missing)} of its {len(entries)} lines have"
    return (f"manifest {manifest}: {some} no meta_sha256, so a dialogue.json edited since the run "
            f"began is not seen: the resumed run trains on the dialogues as they are now. To have edits caught, "
            f"write the manifest with kame.train.manifest.write_manifest(PATH, folders) (kame data synth and kame data "
            f"oracle do) before a run starts")
