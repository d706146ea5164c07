"""A final transcript the STT's own endpointing sent before the runtime VAD ended the speech (a
noise tail, a VAD slower to end than the STT): `kame run` and `kame client` do not wait for
another up to --max-tail, nor say that the final never came."""

from __future__ import annotations

import numpy as np

from kame.runtime.filemode import reply_pending
from kame.runtime.runreport import final_missing

INFO = {"type": "info", "mode": "cascade", "stt": "x"}
START = {"type": "vad", "event": "start", "t": 0.2}
PARTIAL = {"type": "transcript", "text": "hi", "final": False, "t": 0.6}
FINAL = {"type": "transcript", "text": "hi there", "final": True, "t": 1.6}  # before the VAD's end
ANSWERED = [{"type": "turn", "turn": 1, "t": 1.6}, {"type": "agent_turn", "turn": 1, "text": "hello", "t": 3.0}]
# the VAD's end at 1.8 s, reported at 2.3 s (kame run's detected_at; kame client's sent_s: the audio sent by then)
END = {"type": "vad", "event": "end", "t": 1.8, "detected_at": 2.3, "sent_s": 2.3}
EARLY = [INFO, START, PARTIAL, FINAL, *ANSWERED, END]


def test_a_final_before_the_vads_end_leaves_only_the_short_wait():
    """(was: the partial at 0.6 s, "since the speech began", kept the wait going up to --max-tail)"""
    for at in ("detected_at", "sent_s"):  # (kame run's path, kame client's)
        assert not reply_pending(EARLY, 2.3 + 7.0, at=at)  # FINAL_WAIT_S (6 s) after the end, not 30 s
    # words heard after that final (the user went on, the STT at work on them): waited for
    more = {"type": "transcript", "text": "and", "final": False, "t": 1.7}
    assert reply_pending(EARLY[:4] + [more] + EARLY[4:], 2.3 + 20.0, at="sent_s")


def test_a_final_before_the_vads_end_is_not_said_never_to_have_come():
    """(was: final_missing counted only finals after the VAD's end: "the STT's final transcript ...
    never came" though the reply to it came)"""
    rec = {"components": INFO, "vad": [START, END],
           "transcripts": [{**d, "words": []} for d in EARLY if d["type"] == "transcript"]}
    assert final_missing(rec) is None
    later = {"type": "transcript", "text": "hi there and", "final": False, "t": 1.7, "words": []}
    rec["transcripts"].append(later)  # words after that final, and no final for them: missing
    assert final_missing(rec) == {"speech_end": 1.8, "partial": "hi there and"}


def test_the_client_does_not_say_the_final_never_came(capsys):
    """kame client's path: its session record, read by the same check."""
    from types import SimpleNamespace

    from kame.server.client import ChatResult
    from kame.server.clientreport import report

    res = ChatResult(audio=np.zeros(24000, np.float32), texts=["hello"], metas=[{"type": "info", "t0": 0.0}, *EARLY],
                     close_code=1000)
    assert report(res, SimpleNamespace(tail=1.0, max_tail=30.0, json=None, fast=False)) == 0
    assert "never came" not in capsys.readouterr().err
