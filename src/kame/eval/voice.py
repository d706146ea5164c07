"""kame eval mtbench's question voice (--voice): made before the judge loads and OUT is made."""

from __future__ import annotations

import os

from ..cliargs import naming


def make_voice(spec: str, saved: list):
    """The TTS speaking the questions (--voice, seeded if it takes a seed), made before the judge
    loads and OUT is made: one that cannot be made (piper not installed, a voice file missing or no
    piper voice, an espeak voice missing) is refused naming --voice first (was: after the judge had
    loaded, OUT/ left behind). None, nothing loaded, when every file of ``saved`` (the saved runs
    of the questions not rated yet, OUT/runs/ID.rec.json; none for a --rejudge) exists: a rerun
    that only rates needs no voice. (os.path.exists: a path too long is checked by
    check_output_folder, after this.)"""
    from .. import registry

    if all(os.path.exists(path) for path in saved):
        return None
    with naming("--voice"):
        return registry.create_with_optional("tts", spec, seed=0)
