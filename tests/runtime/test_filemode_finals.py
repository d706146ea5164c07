"""`kame run` and an STT whose final transcript comes late, or never (a loaded machine): a
cascade waits for a final the STT is working on, and the summary says what went wrong and what
would help (a partial is shown as a partial, not as what was heard)."""

from __future__ import annotations

import numpy as np

from kame.runtime.filemode import FRAME, print_summary, reply_pending, run_conversation, summarize
from kame.runtime.runreport import final_missing, late_final

from .test_filemode import _TurnAgent
from .test_filemode_ending import _summary


def test_a_cascade_waits_for_a_final_the_stt_is_working_on():
    # the user stopped at 2.0 s (reported at 2.5 s); 20 s later a final is still to come
    cascade = [{"type": "info", "mode": "cascade"}, {"type": "vad", "event": "start", "t": 0.5},
               {"type": "vad", "event": "end", "t": 2.0, "detected_at": 2.5}]
    partial = {"type": "transcript", "final": False, "text": "what is", "t": 1.2}
    assert not reply_pending(cascade, 20.0, at="detected_at")  # the STT heard nothing: FINAL_WAIT_S only
    assert reply_pending(cascade + [partial], 20.0, at="detected_at")  # (was: not after 6 s)
    assert not reply_pending(cascade + [partial, {"type": "transcript", "final": True, "text": "what is it",
                                                  "t": 9.0}], 20.0, at="detected_at")
    earlier = [{**partial, "t": 0.2}]  # a partial of speech before this one says nothing of it
    assert not reply_pending(cascade[:1] + earlier + cascade[1:], 20.0, at="detected_at")
    assert not reply_pending([{**cascade[0], "mode": "tandem"}, *cascade[1:], partial], 3.0)


async def test_the_file_goes_on_while_the_stt_works_until_max_tail():
    from kame.config import load_config

    cfg, pcm = load_config(None, []), np.zeros(10 * FRAME, np.float32)
    # the speech ended at frame 8, the STT sent words at frame 5, its final comes at frame 100
    # (7.4 s after the end: past FINAL_WAIT_S); the reply ends at frame 110
    rec = await run_conversation(cfg, pcm, fast=True, agent=_TurnAgent(100, 110, heard=8, partial=5), extend_s=30.0)
    assert rec["frames"] == 112 and rec["max_tail_reached"] is False  # (was: 84, the final missed)
    rec = await run_conversation(cfg, pcm, fast=True, agent=_TurnAgent(100, 110, heard=8, partial=5), extend_s=4.0)
    assert rec["frames"] == 10 + 50 and rec["max_tail_reached"] is True  # bounded by --max-tail
    rec = await run_conversation(cfg, pcm, fast=True, agent=_TurnAgent(100, 110, heard=8), extend_s=30.0)
    assert rec["frames"] == 8 + 76 and rec["max_tail_reached"] is False  # no words heard: FINAL_WAIT_S


def _cascade_rec(**kw) -> dict:
    rec = {"components": {"mode": "cascade", "stt": "embedded"}, "agent_text": [], "other": [],
           "vad": [{"event": "start", "t": 0.3}, {"event": "end", "t": 2.7}],
           "transcripts": [{"final": False, "text": "what is the capital of", "t": 1.5,
                            "words": [{"word": "of", "start": 0.9, "end": 1.02}]},
                           {"final": True, "text": "what is the capital of France", "t": 9.4, "words": []}]}
    rec.update(kw)
    return rec


def test_a_final_too_late_for_a_reply_is_told_with_what_would_help(tmp_path, capsys):
    # (was: "give a longer --max-tail" though the wait for the final had ended, 6 s after the speech)
    rec = _cascade_rec()
    assert late_final(rec) == {"speech_end": 2.7, "latency": 9.4 - 2.7}
    assert late_final(_cascade_rec(other=[{"type": "turn", "turn": 1, "t": 9.4}])) is None  # a reply started
    assert late_final(_cascade_rec(components={"mode": "tandem"})) is None
    s = _summary(mode="cascade", frontend=None, unanswered=True, late_final=late_final(rec), frames=118)
    print_summary(s, tmp_path / "o.wav", True)
    line = next(x for x in capsys.readouterr().out.splitlines() if "did not answer" in x)
    assert line.endswith("the STT's final transcript for the speech ending at 2.70 s came 6.70 s after it, too "
                         "late for a reply before o.wav ended at 9.44 s; the STT is slow on this machine: give a "
                         "longer --tail, or see backend.nice")
    print_summary({**s, "max_tail_reached": True}, tmp_path / "o.wav", True)  # it waited to --max-tail
    assert "give a longer --max-tail, or see backend.nice" in capsys.readouterr().out
    print_summary({**s, "late_final": None, "max_tail_reached": True}, tmp_path / "o.wav", True)
    assert capsys.readouterr().out.count("did not answer in o.wav; give a longer --max-tail") == 1  # a slow reply


def test_a_final_that_never_came_is_said_plainly_and_a_partial_is_labelled(tmp_path, capsys):
    # (was: heard 'what is the capital of', and the user's last words said to end at 1.02 s,
    # the partial's last word, though the speech ended at 2.7 s and its final never came)
    rec = _cascade_rec(components={"mode": "tandem", "stt": "embedded"})
    rec["transcripts"] = rec["transcripts"][:1]
    miss = final_missing(rec)
    assert miss == {"speech_end": 2.7, "partial": "what is the capital of"}
    assert final_missing(_cascade_rec()) is None  # its final came (late)
    assert final_missing({**rec, "components": {"mode": "tandem", "stt": "none"}}) is None
    click = rec["vad"] + [{"event": "start", "t": 3.0}, {"event": "end", "t": 3.1}]  # no word expected after
    assert final_missing({**rec, "vad": click}) == miss
    s = summarize({**rec, "oracle": [], "metrics": [], "frames": 72, "late_frames": 0, "wall_s": 6.0,
                   "slowdown": 1.0, "load_s": 0.0, "errors": []})
    assert s["heard"] == "" and s["heard_partial"] == "what is the capital of"
    answer = {"last_word_end": 1.02, "stt_final_latency": None, "llm_ttft": None}
    print_summary(_summary(heard="", heard_partial=s["heard_partial"], final_missing=miss, answer_missing=answer,
                            frames=72), tmp_path / "o.wav", True)
    out = capsys.readouterr().out
    assert "heard     partial 'what is the capital of' (no final came for it)" in out
    assert "warning   the STT's final transcript for the speech ending at 2.70 s never came within the run (o.wav " \
           "ended at 5.76 s; it had heard 'what is the capital of' of it), so the back-end could not answer it; " \
           "the STT is slow on this machine: give a longer --tail, or see backend.nice" in out
    assert "ending at 1.02 s" not in out  # the cause is said: not also its consequence
    print_summary(_summary(heard="hello", heard_partial="what is"), tmp_path / "o.wav", True)
    assert "heard     'hello', then partial 'what is' (no final came for it)" in capsys.readouterr().out


def test_a_cascade_waits_while_the_users_speech_with_words_heard_has_not_ended():
    """cascade.end_of_turn_silence longer than --tail (or a VAD that never hears silence): the
    speech is still open (its last "vad" event a "start") with words heard since: its turn is
    still to come (was: not pending, so no answer and "the STT is slow")."""
    cascade = [{"type": "info", "mode": "cascade"}, {"type": "vad", "event": "start", "t": 0.06}]
    partial = {"type": "transcript", "final": False, "text": "what is the capital of france", "t": 1.4}
    assert reply_pending(cascade + [partial], 30.0, at="detected_at")  # (as long as --max-tail goes)
    assert not reply_pending(cascade, 30.0, at="detected_at")  # no words heard in it
    assert not reply_pending([{**cascade[0], "mode": "tandem"}, cascade[1], partial], 30.0)
    final = {"type": "transcript", "final": True, "text": "what is the capital of france", "t": 1.6}
    assert not reply_pending(cascade + [partial, final], 30.0)  # finalised (its turn, if any, is open_turns')


class _OpenSpeechAgent(_TurnAgent):
    """_TurnAgent whose user speech starts at frame 1 and is never ended by the VAD within the
    input (the partial at frame 5, the final and the reply much later)."""

    async def push_audio(self, pcm):
        from kame.runtime.base import Meta

        if self.pushed == 1:
            self.out.put_nowait(Meta({"type": "vad", "event": "start", "t": 0.08}))
        await super().push_audio(pcm)


async def test_the_file_goes_on_while_the_users_speech_has_not_ended():
    from kame.config import load_config

    cfg, pcm = load_config(None, []), np.zeros(10 * FRAME, np.float32)
    # (heard=10**6: no VAD "end" within the run) the final and turn at frame 60, the reply ends at 70
    rec = await run_conversation(cfg, pcm, fast=True, agent=_OpenSpeechAgent(60, 70, heard=10**6, partial=5),
                                 extend_s=30.0)
    assert rec["frames"] == 72 and rec["max_tail_reached"] is False  # (was: 10, no answer)


STT_DOWN = {"type": "backend", "component": "stt", "status": "down",
            "error": "the pocketsphinx child process died (exit code -9)"}


def test_no_final_is_waited_for_from_an_stt_that_failed():
    """(QA k45 chaos: the STT's stream failed mid-utterance; `kame run` and `kame client` played
    --max-tail of silence waiting for a final it could no longer give)"""
    cascade = [{"type": "info", "mode": "cascade"}, {"type": "vad", "event": "start", "t": 0.5},
               {"type": "vad", "event": "end", "t": 2.0, "detected_at": 2.5}]
    partial = {"type": "transcript", "final": False, "text": "what is", "t": 1.2}
    assert reply_pending(cascade + [partial], 20.0, at="detected_at")  # (the STT at work: waited for)
    assert not reply_pending(cascade + [partial, {**STT_DOWN, "t": 2.2}], 3.0, at="detected_at")  # failed after the end
    # failed during the speech: what it heard before gets no final; FINAL_WAIT_S for its restarted stream
    down_early = [partial, {**STT_DOWN, "t": 1.5}]
    assert reply_pending(cascade + down_early, 3.0, at="detected_at")
    assert not reply_pending(cascade + down_early, 20.0, at="detected_at")
    # ... unless the restarted stream heard words after it
    assert reply_pending(cascade + down_early + [{**partial, "t": 1.8}], 20.0, at="detected_at")
    # a final, then the failure (the embedded STT's pocketsphinx dying mid-utterance): the final counts
    assert not reply_pending(cascade + [partial, {**partial, "final": True, "t": 2.9}, {**STT_DOWN, "t": 3.0}],
                             3.0, at="detected_at")


def test_a_final_is_still_waited_for_from_an_stt_whose_stream_went_on():
    """The down of a failure the stream went on from ("goes_on": the previous utterance's final
    came, then pocketsphinx's death was reported) says nothing of the next utterance's final,
    still to come (was: read as "no final is coming", so kame run / kame client stopped waiting)."""
    cascade = [{"type": "info", "mode": "cascade"}, {"type": "vad", "event": "start", "t": 3.0},
               {"type": "vad", "event": "end", "t": 4.0, "detected_at": 4.5}]
    partial = {"type": "transcript", "final": False, "text": "and of italy", "t": 3.5}
    went_on = {**STT_DOWN, "goes_on": True, "t": 5.0}
    assert reply_pending(cascade + [partial, went_on, {**partial, "t": 5.3}], 20.0, at="detected_at")
    assert not reply_pending(cascade + [partial, {**STT_DOWN, "t": 5.0}], 20.0, at="detected_at")


class _FailingSTTAgent(_TurnAgent):
    """_TurnAgent whose STT fails (a "backend" stt "down" Meta) at frame ``down``."""

    def __init__(self, *args, down: int, **kw):
        super().__init__(*args, **kw)
        self.down_at = down

    async def push_audio(self, pcm):
        from kame.runtime.base import Meta

        if self.pushed == self.down_at:
            self.out.put_nowait(Meta({**STT_DOWN, "t": self.pushed * 0.08}))
        await super().push_audio(pcm)


async def test_the_file_does_not_wait_for_a_final_from_an_stt_that_failed():
    from kame.config import load_config

    cfg, pcm = load_config(None, []), np.zeros(10 * FRAME, np.float32)
    # words heard at frame 5, the speech ended at frame 8, the STT failed at frame 9: no final comes
    rec = await run_conversation(cfg, pcm, fast=True, agent=_FailingSTTAgent(10_000, 10_000, heard=8, partial=5,
                                                                             down=9), extend_s=30.0)
    assert rec["frames"] == 11 and rec["max_tail_reached"] is False  # (was: 10 + 375, --max-tail)
