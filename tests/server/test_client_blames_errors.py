"""`kame client`'s warnings name the cause `kame run` names (kame.runtime.runreport.likeliest_cause):
the errors the server's back-end reported, if any, before a slow STT."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from kame.server.client import ChatResult
from kame.server.clientreport import report

# the user spoke (0.2-0.9 s), partials came, the final never did
SPOKE = [{"type": "info", "t0": 0.0}, {"type": "info", "mode": "cascade", "stt": "x", "llm": "y"},
         {"type": "vad", "event": "start", "t": 0.2}, {"type": "transcript", "text": "what", "final": False, "t": 0.6},
         {"type": "vad", "event": "end", "t": 0.9}]
STT_FAILED = {"code": "agent_error", "message": "stt back-end failed: boom", "fatal": False}


def _warnings(errors, capsys, json=None) -> str:
    res = ChatResult(audio=np.zeros(2400, np.float32), metas=SPOKE, errors=errors, close_code=1000)
    assert report(res, SimpleNamespace(tail=6.0, max_tail=30.0, json=json, fast=False)) == 0
    return capsys.readouterr().err


def test_a_missing_final_blames_the_servers_back_end_errors_not_a_slow_stt(capsys):
    """(was: "the STT is slow on the server's machine ...: give a longer --tail" after the
    server's own "stt back-end failed" errors)"""
    err = _warnings([STT_FAILED, STT_FAILED], capsys, json="cl1.json")
    assert "the STT's final transcript for the user's speech ending 0.90 s into the session never came" in err
    assert "its back-end reported 2 error(s): see 'errors' in cl1.json" in err
    assert "is slow" not in err and "give a longer" not in err
    # no --json: the errors printed above; the client's own unreadable message is no back-end's
    err = _warnings([STT_FAILED, {"code": "unreadable_message", "message": "skipped", "fatal": False}], capsys)
    assert "its back-end reported 1 error(s): see the server errors above" in err


def test_without_errors_a_missing_final_still_blames_a_slow_stt(capsys):
    err = _warnings([], capsys)
    assert "the STT is slow on the server's machine: give a longer --tail" in err and "error(s)" not in err


def test_only_the_back_ends_errors_are_blamed_not_protocol_errors_nor_the_servers_opus_encoding(capsys):
    """(was: every server error but unreadable_message counted: a protocol error about the
    client's own audio and the server's failure to Opus-encode were "its back-end reported 3
    error(s)")"""
    from kame.runtime.runreport import OPUS_FAILED

    opus = {"code": "agent_error", "message": f"{OPUS_FAILED} the agent's audio (ValueError); dropped until it can",
            "fatal": False}
    bad = {"code": "bad_audio", "message": "audio rejected by the agent: not mono", "fatal": False}
    err = _warnings([bad, opus, STT_FAILED], capsys)
    assert "its back-end reported 1 error(s): see the server errors above" in err
    # none of the back-end's: a slow STT is the likeliest cause again
    err = _warnings([bad, opus], capsys)
    assert "the STT is slow on the server's machine" in err and "error(s)" not in err


def test_with_more_errors_than_printed_the_warning_says_only_the_first_are_above(capsys):
    """(was: "see the server errors above" when only the first SHOWN_ERRORS were)"""
    err = _warnings([STT_FAILED] * 7, capsys)
    assert "server error: ... and 2 more (give --json to keep them all)" in err
    assert "its back-end reported 7 error(s): see the server errors above (the first 5 of 7; give --json to keep " \
           "them all)" in err
