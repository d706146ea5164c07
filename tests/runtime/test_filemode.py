"""`kame run` end to end: tiny random front-end + tiny codec + fake STT/LLM (registered as
components), simulated real time; outputs wav/json/png with the expected structure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from kame.audio import write_wav
from kame.cli import main

CODEC = "mimi:random-tiny"


def test_kame_run_end_to_end(tmp_path, capsys, fake_components):
    rng = np.random.default_rng(0)
    user = np.zeros(int(1.2 * 24000), np.float32)
    user[4800:19200] = np.clip(rng.standard_normal(14400) * 0.25, -0.9, 0.9)  # 0.2 s .. 0.8 s "speech"
    wav = tmp_path / "in.wav"
    write_wav(wav, user, 24000)
    out = tmp_path / "out.wav"
    rc = main(["run", str(wav), "-o", str(out), "--tail", "1.0", "--set", "frontend.spec=random:tiny",
               "--set", f"codec.spec={CODEC}", "--set", "backend.stt=fake", "--set", "backend.llm=fake",
               "--set", "runtime.vad=energy", "--set", "backend.retry_s=0.1"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "random:tiny" in printed and "RANDOM WEIGHTS" in printed
    audio, sr = sf.read(out)
    n = int(np.ceil(2.2 * 24000 / 1920)) * 1920
    assert sr == 24000 and audio.shape == (n, 2)
    np.testing.assert_allclose(audio[: user.shape[0], 0], user, atol=1e-3)  # left: the user
    assert np.abs(audio[:1920, 1]).max() == 0 and np.abs(audio[:, 1]).max() > 0.0  # right: agent (after frame 0)
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["components"]["frontend"] == "random:tiny" and doc["frontend_random"] is True
    assert "RANDOM" in doc["note"] and doc["components"]["codec"] == CODEC
    assert doc["components"]["stt"] == "fake" and doc["components"]["llm"] == "fake"
    assert doc["pacing"] == "simulated-realtime"
    words = doc["user_words"]
    assert words and all(0.15 <= w["start"] < w["end"] <= 0.9 for w in words)  # times on the wav's axis
    assert any(t["final"] for t in doc["transcripts"]) and any(not t["final"] for t in doc["transcripts"])
    kinds = {o["event"] for o in doc["oracle"]}
    assert kinds == {"reset", "append"} and "answer" in "".join(o.get("text", "") for o in doc["oracle"])
    assert doc["agent_text"] and all(0 < a["t"] <= 2.3 for a in doc["agent_text"])
    names = {m["name"] for m in doc["metrics"]}
    assert {"oracle_lag", "llm_ttft"} <= names
    assert [v["event"] for v in doc["vad"]][:2] == ["start", "end"]
    assert doc["summary"]["frames"] == n // 1920 and doc["summary"]["step_time_p50_s"] > 0
    assert doc["stats"]["oracle_tokens_fed"] > 0 and doc["stats"]["final"]
    assert set(doc) == documented_json_keys()  # docs/runtime.md names every key (7 were missing)
    for key in ("transcripts", "oracle", "agent_text", "vad", "metrics"):  # times in order
        times = [e["t"] for e in doc[key]]
        assert times == sorted(times), key
    assert doc["summary"]["reply_cut_off"] is False
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def documented_json_keys() -> set[str]:
    """The top-level OUT.json keys docs/runtime.md ("File mode") names: `code` words of its bullet."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "runtime.md").read_text()
    bullet = text.split("* `OUT.json` —", 1)[1].split("\n* ", 1)[0]
    return set(re.findall(r"`([a-z_]+)`", bullet)) - {"simulated", "fast", "turn"}


def test_kame_run_bad_input(tmp_path, capsys):
    out = tmp_path / "o.wav"
    assert main(["run", str(tmp_path / "missing.wav"), "-o", str(out)]) == 1
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF1234WAVEjunk")
    assert main(["run", str(bad), "-o", str(out)]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert main(["run", str(bad), "-o", str(out), "--set", "runtime.nope=1"]) == 1
    assert "runtime.nope" in capsys.readouterr().err
    assert main(["run", str(bad), "-o", str(tmp_path / "o.mp3")]) == 1  # checked before reading or loading
    assert "must be a .wav" in capsys.readouterr().err
    (tmp_path / "d.wav").mkdir()
    assert main(["run", str(bad), "-o", str(tmp_path / "d.wav")]) == 1
    assert "is a folder" in capsys.readouterr().err
    (tmp_path / "side.json").mkdir()  # OUT.json next to OUT.wav: refused before the run, not after it
    assert main(["run", str(bad), "-o", str(tmp_path / "side.wav")]) == 1
    assert "side.json is a folder, so OUT.json cannot be written" in capsys.readouterr().err
    (tmp_path / "pic.png").mkdir()  # OUT.png too, unless --no-png
    assert main(["run", str(bad), "-o", str(tmp_path / "pic.wav")]) == 1
    assert "pic.png is a folder, so OUT.png cannot be written" in capsys.readouterr().err
    assert main(["run", str(bad), "-o", str(tmp_path / "pic.wav"), "--no-png"]) == 1
    assert "cannot read" in capsys.readouterr().err  # (got as far as reading the input)
    assert main(["run", str(bad), "-o", str(bad)]) == 1  # would overwrite the input
    assert "is the input file" in capsys.readouterr().err and bad.read_bytes() == b"RIFF1234WAVEjunk"
    audio_named_json = tmp_path / "talk.json"  # OUT.json would be the input (was: overwritten by it)
    audio_named_json.write_bytes(b"RIFF1234WAVEjunk")
    assert main(["run", str(audio_named_json), "-o", str(tmp_path / "talk.wav")]) == 1
    assert "OUT.json would be" in capsys.readouterr().err and audio_named_json.read_bytes() == b"RIFF1234WAVEjunk"
    for tail in ("nan", "-1", "1e9"):  # (usage errors: argparse's status 2, naming the option)
        with pytest.raises(SystemExit) as e:
            main(["run", str(bad), "-o", str(out), "--tail", tail])
        assert e.value.code == 2 and "argument --tail: " in capsys.readouterr().err
    whole = tmp_path / "whole.wav"
    sf.write(whole, np.zeros(24000, np.float32), 24000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"  # a copy that stopped: libsndfile alone would read its 478 samples
    cut.write_bytes(whole.read_bytes()[:1000])
    assert main(["run", str(cut), "-o", str(out)]) == 1
    assert "is truncated: its header announces 48000 bytes of audio, the file holds 956" in capsys.readouterr().err
    assert main(["run", str(tmp_path), "-o", str(out)]) == 1
    assert "is a folder, not an audio file" in capsys.readouterr().err
    assert not out.exists()


def test_kame_run_fast_front_end_only(tmp_path, capsys):
    wav = tmp_path / "in.wav"  # 16 kHz stereo: converted to 24 kHz mono, and the user is told
    sf.write(wav, np.zeros((16000, 2), np.float32), 16000)
    out = tmp_path / "fast.wav"
    rc = main(["run", str(wav), "-o", str(out), "--fast", "--no-png", "--tail", "0.5",
               "--set", f"codec.spec={CODEC}", "--set", "backend.stt=none", "--set", "backend.llm=none",
               "--set", "runtime.vad=energy"])
    assert rc == 0 and not out.with_suffix(".png").exists()
    assert "resampled 16000 Hz -> 24 kHz; mixed 2 channels to mono" in capsys.readouterr().out
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["input_conversion"].startswith("resampled 16000 Hz")
    assert doc["pacing"] == "fast" and doc["summary"]["frames"] == 19 and doc["summary"]["late_frames"] == 0
    assert doc["components"]["stt"] == "none" and doc["transcripts"] == [] and doc["oracle"] == []
    assert sf.info(str(out)).frames == 19 * 1920


def test_reply_cut_off_when_the_agent_text_outlives_its_audio():
    """A cascade answer that comes after the file's end (default --tail 3) left OUT.wav silent on the
    right with nothing saying so; now the summary flags it (and the run prints a warning)."""
    from kame.runtime.filemode import SR, reply_cut_off

    text = [{"t": 4.9, "text": "The"}, {"t": 5.4, "text": " capital"}]
    silent = np.zeros(6 * SR, np.float32)
    assert reply_cut_off({"agent_text": text}, silent)
    spoken = silent.copy()
    spoken[int(5.2 * SR):int(5.9 * SR)] = 0.1  # spoken, then silent before the end: complete
    assert not reply_cut_off({"agent_text": text}, spoken)
    spoken[int(5.2 * SR):] = 0.1  # a cascade still speaking when the file ends (the demo's cascade.wav)
    turn = [{"type": "turn", "turn": 1, "t": 4.8}]
    assert reply_cut_off({"agent_text": text, "other": turn}, spoken)
    # ... but a reply whose last words end the file is complete once its agent_turn has come (was:
    # flagged, as audio in the last frame: espeak's replies end abruptly, piper's in silence)
    assert not reply_cut_off({"agent_text": text, "other": turn + [{"type": "agent_turn", "turn": 1, "t": 5.9}]},
                             spoken)
    babble = np.full(3 * SR, 0.1, np.float32)  # tandem: text of the last frame at the very end
    assert not reply_cut_off({"agent_text": [{"t": 3.0, "text": "x"}]}, babble)
    assert not reply_cut_off({"agent_text": [{"t": 5.0, "text": " "}]}, silent)  # no reply at all
    # a reply whose TTS failed (no audio) is not one cut off by the file's end: it failed, and says so
    failed = turn + [{"type": "agent_turn", "turn": 1, "t": 5.5, "failed": True, "reply": "The capital"}]
    assert not reply_cut_off({"agent_text": text, "other": failed}, silent)  # (was: cut off)


def test_the_summary_tells_failed_and_empty_replies(tmp_path, capsys):
    # (was: a failed TTS "cut off ... still answering when the file ended"; an LLM answering with no
    # text "give a longer --max-tail")
    from kame.runtime.filemode import print_summary, reply_outcomes

    from .test_filemode_ending import _summary

    other = [{"type": "agent_turn", "turn": 1, "failed": True, "reply": "Hi"},
             {"type": "agent_turn", "turn": 2, "failed": False, "reply": ""},
             {"type": "agent_turn", "turn": 3, "failed": False, "reply": "Fine."},
             {"type": "agent_turn", "turn": 4, "failed": False, "interrupted": True, "reply": ""}]  # not empty
    assert reply_outcomes({"other": other}) == {"failed": 1, "empty": 1, "barged_in": 0}
    print_summary(_summary(mode="cascade", replies={"failed": 1, "empty": 1}, errors=2), tmp_path / "o.wav", True)
    out = capsys.readouterr().out
    assert "warning   1 of the agent's replies had no text: its LLM 'embedded' answered with no text; " \
           "check that LLM's replies, or set another backend.llm" in out
    assert "warning   1 of the agent's replies failed before all of it was spoken; its back-end reported 2 error(s)" in out
    print_summary(_summary(mode="cascade", unanswered=True, replies={"failed": 0, "empty": 1}), tmp_path / "o.wav", True)
    assert "did not answer in o.wav; its LLM 'embedded' answered with no text" in capsys.readouterr().out


class _TurnAgent:
    """A stand-in cascade: answers every pushed frame with a frame of audio; the user's speech
    ends (VAD "end") at frame ``heard``, a reply starts (Meta "turn", after its final transcript)
    at frame ``start`` and ends (Meta "agent_turn") after frame ``end``; with ``partial``, the
    STT sends a partial transcript with words at that frame."""

    components = {"mode": "cascade"}

    def __init__(self, start: int, end: int, heard: int | None = None, lag: int = 0,
                 partial: int | None = None) -> None:
        import asyncio

        self.start_at, self.end_at, self.pushed, self.lag = start, end, 0, lag  # lag 1: stamped as a real agent's
        self.heard_at = start if heard is None else heard
        self.partial_at = partial
        self.out: asyncio.Queue = asyncio.Queue()

    async def start(self):
        pass

    async def stop(self):
        pass

    async def open_session(self, name):
        return self

    async def push_audio(self, pcm):
        from kame.runtime.base import AgentAudio, Meta

        k, self.pushed = self.pushed, self.pushed + 1
        if k == 0:
            self.out.put_nowait(Meta({"type": "info", "mode": "cascade"}))
        if k == self.partial_at:
            self.out.put_nowait(Meta({"type": "transcript", "final": False, "text": "what is", "t": k * 0.08}))
        if k == self.heard_at:
            self.out.put_nowait(Meta({"type": "vad", "event": "end", "t": k * 0.08}))
        if k == self.start_at:
            self.out.put_nowait(Meta({"type": "transcript", "final": True, "text": "hi", "t": k * 0.08}))
            self.out.put_nowait(Meta({"type": "turn", "turn": 1, "t": k * 0.08}))
        speaking = self.start_at <= k <= self.end_at
        self.out.put_nowait(AgentAudio(np.full(1920, 0.1 if speaking else 0.0, np.float32), (k + self.lag) * 0.08))
        if k == self.end_at:
            self.out.put_nowait(Meta({"type": "agent_turn", "turn": 1, "text": "done", "t": k * 0.08}))

    async def outputs(self):
        while (item := await self.out.get()) is not None:
            yield item

    async def close(self):
        self.out.put_nowait(None)


async def test_a_cascade_reply_under_way_extends_the_file_until_it_is_over():
    """The input (10 frames) ends mid-reply: silence frames follow until the reply's agent_turn
    (frame 24) and one frame more (the audio of that frame comes out one frame later), not
    past it; with too little extension the file ends at the bound."""
    from kame.config import load_config
    from kame.runtime.filemode import FRAME, agent_track, run_conversation

    cfg, pcm = load_config(None, []), np.zeros(10 * FRAME, np.float32)
    rec = await run_conversation(cfg, pcm, fast=True, agent=_TurnAgent(3, 24), extend_s=30.0)
    assert rec["frames"] == 26 and len(rec["agent_audio"]) == 26
    # stamped as a real agent stamps it (frame k's audio at k + 1): the reply's last frame is in
    # the file (was: the extension stopped at frame 24, and frame 24's audio fell past the end)
    rec = await run_conversation(cfg, pcm, fast=True, agent=_TurnAgent(3, 24, lag=1), extend_s=30.0)
    agent = agent_track(rec, rec["frames"] * FRAME)
    assert np.flatnonzero(agent)[-1] == 26 * FRAME - 1 and (agent[4 * FRAME:26 * FRAME] > 0).all()
    rec = await run_conversation(cfg, pcm, fast=True, agent=_TurnAgent(3, 24), extend_s=0.8)
    assert rec["frames"] == 20  # 10 frames of input + 10 of extension (0.8 s), the reply cut
    rec = await run_conversation(cfg, pcm, fast=True, agent=_TurnAgent(3, 6), extend_s=30.0)
    assert rec["frames"] == 10  # the reply was over within the input: nothing added
    rec = await run_conversation(cfg, pcm, fast=True, agent=_TurnAgent(50, 60), extend_s=30.0)
    assert rec["frames"] == 10  # no reply under way when the input ended
    # the user stopped at frame 8 and the final transcript (the turn) comes at frame 30
    rec = await run_conversation(cfg, pcm, fast=True, agent=_TurnAgent(30, 40, heard=8), extend_s=30.0)
    assert rec["frames"] == 42
    # ... but a final that never comes is waited for FINAL_WAIT_S (6 s) after the speech ended
    rec = await run_conversation(cfg, pcm, fast=True, agent=_TurnAgent(300, 310, heard=8), extend_s=30.0)
    assert rec["frames"] == 8 + 76  # frames 0..82: the last one starts < 6 s after frame 8; and one more


def test_max_tail_is_checked(tmp_path, capsys):
    wav = tmp_path / "in.wav"
    write_wav(wav, np.zeros(2400, np.float32), 24000)
    with pytest.raises(SystemExit) as e:  # (a usage error: argparse's status 2, naming the option)
        main(["run", str(wav), "-o", str(tmp_path / "o.wav"), "--max-tail", "nan"])
    assert e.value.code == 2 and "argument --max-tail: " in capsys.readouterr().err


def test_summary_fields_are_plain_json_and_cascade_replies_are_spaced():
    """reply_cut_off is a bool (was a numpy bool, written "False" — a true string — to OUT.json);
    a cascade's replies are joined with a space; oracle lag lists each prediction once (the
    stage fed to the front-end, not also the producer's "emitted"); a cascade that heard the user
    and said nothing is flagged."""
    import json

    from kame.runtime.filemode import SR, reply_cut_off, summarize, unanswered

    rec = {"agent_text": [{"t": 1.0, "text": "Paris."}, {"t": 5.0, "text": "The"}, {"t": 5.1, "text": " answer."}],
           "other": [{"type": "turn", "turn": 1, "t": 0.9}, {"type": "turn", "turn": 2, "t": 4.9}],
           "components": {"mode": "cascade"}, "transcripts": [{"final": True, "text": "hi", "t": 0.5, "words": []}],
           "oracle": [], "metrics": [{"name": "oracle_lag", "value": 0.6, "labels": {"stage": "emitted"}},
                                     {"name": "oracle_lag", "value": 0.75, "labels": {"stage": "fed"}}],
           "frames": 1, "late_frames": 0, "wall_s": 1.0, "slowdown": 1.0, "load_s": 0.0, "errors": []}
    cut = reply_cut_off(rec, np.full(6 * SR, 0.1, np.float32))  # turn 2 has no agent_turn
    assert cut is True and json.dumps(cut) == "true"
    s = summarize(rec)
    assert s["agent_text"] == "Paris. The answer." and s["oracle_lag_s"] == [0.75]
    assert not unanswered(rec) and unanswered({**rec, "agent_text": []})
    assert not unanswered({**rec, "agent_text": [], "transcripts": []})  # nothing heard: nothing to answer


def test_the_summary_shows_a_top_k_too_large_for_a_float_as_it_is(tmp_path, capsys):
    """A config.json's lm_gen_config top_k (or frontend.top_k) of 400 digits is taken (an int is
    exact); the summary's sampling line writes it whole, temperatures with :g (was: every value
    with :g, an OverflowError traceback after the run, exit 1 and no OUT.json)."""
    from kame.runtime.filemode import print_summary, summarize

    comps = {"mode": "tandem", "frontend": "ck", "frontend_random": False, "oracle_stream": "text_emb-copy",
             "sampling_temp": 0.8, "sampling_top_k": 10 ** 400, "sampling_temp_text": 0.7,
             "sampling_top_k_text": 25, "sampling_greedy": False}
    rec = {"agent_text": [], "other": [], "components": comps, "transcripts": [], "oracle": [], "metrics": [],
           "frames": 1, "late_frames": 0, "wall_s": 1.0, "slowdown": 1.0, "load_s": 0.0, "errors": []}
    s = summarize(rec)
    assert s["sampling"] == f"temp=0.8 top_k={10 ** 400} temp_text=0.7 top_k_text=25"
    print_summary(s, tmp_path / "out.wav", no_png=True)
    assert f"sampling temp=0.8 top_k={10 ** 400} temp_text=0.7 top_k_text=25" in capsys.readouterr().out


def test_reply_pending_counts_routed_turns_and_waits_from_when_the_end_was_detected():
    from kame.runtime.filemode import reply_pending, unanswered

    tandem = [{"type": "info", "mode": "tandem"}]
    routed = tandem + [{"type": "route", "turn": 1, "route": "structured", "t": 2.0}]
    assert reply_pending(routed, 3.0)  # hybrid routing answers it the cascade's way: wait for it
    assert not reply_pending(routed + [{"type": "agent_turn", "turn": 1, "t": 4.0}], 4.1)
    assert not reply_pending(tandem + [{"type": "route", "turn": 2, "route": "open", "t": 2.0}], 3.0)
    # a long end_of_turn_silence: the VAD reports the end (detected_at) long after the speech
    # ended (t); the wait for the final counts from the report (was: from t, so it was over)
    cascade = [{"type": "info", "mode": "cascade"},
               {"type": "vad", "event": "end", "t": 1.0, "detected_at": 7.5}]
    assert reply_pending(cascade, 8.0, at="detected_at") and not reply_pending(cascade, 8.0)
    assert not reply_pending(cascade, 14.0, at="detected_at")
    rec = {"components": {"mode": "cascade"}, "agent_text": [],
           "transcripts": [{"final": True, "text": " ", "t": 1.0}]}  # a final with no words
    assert not unanswered(rec)
