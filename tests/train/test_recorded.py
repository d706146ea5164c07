"""kame.train.recorded.from_kame_run: what `kame run` writes (OUT.wav, OUT.json, with the timing
kame.runtime.filemode gives them) becomes a Dialogue on the layout's one clock: the agent's
frame f at frame f, its text pieces joined into words, the oracle events at the steps that fed them."""

from __future__ import annotations

import json
import re
import shutil
import warnings

import numpy as np
import pytest

from kame.audio import write_wav
from kame.backend.tokenizer import DEFAULT_MODEL, default_tokenizer
from kame.model.config import preset
from kame.train.data import DataError, OracleEvent, Word, read_dialogue, write_dialogue
from kame.train.examples import training_example
from kame.train.recorded import from_kame_run

from ._fakes import FakeCodec, LEVELS, codes_of, levels

F = 0.08
T = 20  # frames played
LAG = 2  # output frame f comes out of step f + 1 (max delay 1), placed one frame after its input frame


def stamp(step: int) -> float:
    """When `kame run` stamps what step k delivers (its tick + the FakeClock's 1 ns)."""
    return (step + 1) * F + 1e-9


def write_run(tmp_path, mode: str = "tandem", tokenizer: str = "default (kame/assets)", lag: int = LAG,
              frames: list | None = None, feed: dict | None = None):
    """``frames``: each oracle event's recorded frame, with ``feed`` as frontend_feed (a run of this
    kame); without them, an older kame's recording."""
    user, model = levels(T, 0), levels(T - lag, 7)  # the model's output frames 0..T-lag-1
    right = [0] * lag + model  # frame f of the model is heard at frame f + lag
    pcm = np.stack([np.repeat(np.asarray(user, np.float32) / LEVELS, 1920),
                    np.repeat(np.asarray(right, np.float32) / LEVELS, 1920)], axis=1)
    out = tmp_path / "answer.wav"
    write_wav(out, pcm, 24000)
    pieces = {3: " The", 4: " cap", 5: "ital", 7: " is", 9: " Par", 10: "is.", 11: " "}  # by output frame
    doc = {
        "input": "q.wav", "output": "elsewhere/answer.wav", "duration_s": T * F, "frontend_random": True,
        "components": {"frontend": "random:tiny", "codec": "embedded", "stt": "embedded", "llm": "embedded",
                       "mode": mode, "tokenizer": tokenizer},
        "user_words": [{"word": "What", "start": 0.0, "end": 0.24}, {"word": "is", "start": 0.24, "end": 0.46},
                       {"word": "the capital", "start": 0.46, "end": 1.9}],  # (ends past the file)
        "agent_text": [{"t": stamp(f + 1), "text": p} for f, p in pieces.items()],
        "oracle": [{"type": "oracle", "event": "reset", "prediction_id": 1, "t": stamp(9)},
                   {"type": "oracle", "event": "append", "prediction_id": 1, "text": " the", "token_ids": [5, 6],
                    "t": stamp(9)},
                   {"type": "oracle", "event": "append", "prediction_id": 1, "text": "", "token_ids": [],
                    "t": stamp(10)},
                   {"type": "oracle", "event": "append", "prediction_id": 1, "text": " Paris", "token_ids": [7],
                    "t": stamp(10)},
                   {"type": "oracle", "event": "reset", "prediction_id": 2, "t": stamp(T + 1)}],  # after the end
    }
    if frames is not None:
        for o, f in zip(doc["oracle"], frames):
            o["frame"] = f
        doc["frontend_feed"] = feed
    (tmp_path / "answer.json").write_text(json.dumps(doc))
    return tmp_path / "answer.json", user, model


@pytest.mark.filterwarnings("ignore:.*does not record its oracle events:UserWarning")  # (an older recording)
def test_a_recorded_run_becomes_a_dialogue_on_one_clock(tmp_path):
    out_json, user, model = write_run(tmp_path)
    d = from_kame_run(out_json)
    # the agent's last LAG frames were never recorded: the dialogue ends LAG frames earlier (no
    # silence made up for the agent: it would be trained on as what the agent said)
    assert d.frames == T - LAG and d.samples == (T - LAG) * 1920
    frame_levels = np.round(d.audio.reshape(T - LAG, 1920, 2).mean(1) * LEVELS).astype(int)
    assert frame_levels[:, 0].tolist() == user[: T - LAG]  # the user as played
    assert frame_levels[:, 1].tolist() == model  # the model's frame f at frame f, to its last
    assert d.words_of("user") == [Word("user", "What", 0.0, 0.24), Word("user", "is", 0.24, 0.46),
                                  Word("user", "the", 0.46, 1.44), Word("user", "capital", 0.46, 1.44)]
    got = [(w.word, round(w.start / F), round(w.end / F)) for w in d.words_of("agent")]
    assert got == [("The", 3, 4), ("capital", 4, 6), ("is", 7, 8), ("Paris.", 9, 11)]
    # each event before the step after the one it was stamped in; the empty append and the event
    # after the recording's end are left out
    assert d.oracle == [OracleEvent(10, "reset", prediction=1), OracleEvent(10, "append", [5, 6], " the"),
                        OracleEvent(11, "append", [7], " Paris")]
    assert d.tokenizer_sha256 == default_tokenizer().sha256
    assert d.source["kind"] == "kame run" and d.source["agent_lag"] == LAG and d.source["frontend_random"]
    # a training example of it: the agent's codes of output frame f in column f, its words there too
    cfg = preset("tiny").replace(text_card=4000)
    tok = default_tokenizer()
    codes, oracle = training_example(d, FakeCodec(), tok, cfg)
    assert codes[1: 1 + cfg.dep_q, : T - LAG].tolist() == codes_of(model).tolist()
    assert codes[0, 3] == tok.encode_words(["The"])[0] and codes[0, 2] == cfg.existing_text_end_padding_id
    assert oracle[9:13].tolist() == [3, 4000, 5, 6]
    back = read_dialogue(write_dialogue(tmp_path / "d", d))  # it is a valid dialogue folder
    assert back.words == d.words and back.oracle == d.oracle


@pytest.mark.filterwarnings("ignore:.*does not record its oracle events:UserWarning")  # (an older recording)
def test_other_lags_and_refusals(tmp_path):
    out_json, _, model = write_run(tmp_path)
    d = from_kame_run(out_json, tmp_path / "answer.wav", agent_lag=3)  # a front-end of max delay 2
    frame_levels = np.round(d.audio.reshape(T - 3, 1920, 2).mean(1) * LEVELS).astype(int)
    assert frame_levels[:, 1].tolist() == model[1:]
    assert [round(w.start / F) for w in d.words_of("agent")] == [2, 3, 6, 8]
    with pytest.raises(DataError, match=r"agent_lag must be an int >= 0"):
        from_kame_run(out_json, agent_lag=-1)
    (tmp_path / "c").mkdir()
    other, _, _ = write_run(tmp_path / "c", mode="cascade")
    with pytest.raises(DataError, match=r"a cascade's recording: its agent text is not timed to its speech"):
        from_kame_run(other)
    (tmp_path / "t").mkdir()
    mine, _, _ = write_run(tmp_path / "t", tokenizer="tokenizer_spm_32k_3.model")
    with pytest.raises(DataError, match=r"oracle ids come from tokenizer 'tokenizer_spm_32k_3.model': pass it as tokenizer="):
        from_kame_run(mine)
    assert from_kame_run(mine, tokenizer=default_tokenizer()).oracle[1].ids == [5, 6]
    write_wav(tmp_path / "mono.wav", np.zeros(1920 * 4, np.float32), 24000)
    with pytest.raises(DataError, match=r"mono.wav: 24000 Hz, 1 channel\(s\); `kame run` writes stereo"):
        from_kame_run(out_json, tmp_path / "mono.wav")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match=r"not what `kame run` writes"):
        from_kame_run(tmp_path / "x.json")


@pytest.mark.filterwarnings("ignore:.*does not record its oracle events:UserWarning")  # (an older recording)
def test_the_shipped_tokenizer_named_by_its_path_is_the_default(tmp_path):
    """A run of a front-end kame trained (config.json tokenizer "default") recorded by an older kame
    names the shipped tokenizer file by its absolute path: taken as the default (was: tokenizer=
    asked for); another file's path still asks for it."""
    (tmp_path / "s").mkdir()
    shipped, _, _ = write_run(tmp_path / "s", tokenizer=str(DEFAULT_MODEL.resolve()))
    d = from_kame_run(shipped)
    assert d.tokenizer_sha256 == default_tokenizer().sha256 and d.oracle[1].ids == [5, 6]
    (tmp_path / "o").mkdir()
    other = tmp_path / "o" / "spm.model"
    shutil.copy(DEFAULT_MODEL, other)  # (the same pieces, but a file of its own: the run names it)
    mine, _, _ = write_run(tmp_path / "o", tokenizer=str(other))
    with pytest.raises(DataError, match=rf"oracle ids come from tokenizer '{re.escape(str(other))}': pass it as "
                                        r"tokenizer="):
        from_kame_run(mine)


def test_the_recorded_frames_and_max_delay_are_used(tmp_path):
    """A run of this kame records the step each event went into and the front-end's max_delay:
    those are used, not the stamps (here the events went a step earlier than stamped: a race) nor
    the assumed max_delay 1."""
    feed = {"max_delay": 2, "delays": [0, 0, 2], "oracle": True, "start_id": 4000, "pad_id": 3, "text_card": 4000,
            "steps": T, "oracle_tokens": [[9, 4000], [10, 5], [11, 6], [12, 7]], "oracle_frames": True}
    out_json, _, model = write_run(tmp_path, lag=3, frames=[9, 9, 10, 10, None], feed=feed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing estimated: no warning
        d = from_kame_run(out_json)
    assert d.oracle == [OracleEvent(9, "reset", prediction=1), OracleEvent(9, "append", [5, 6], " the"),
                        OracleEvent(10, "append", [7], " Paris")]
    frame_levels = np.round(d.audio.reshape(T - 3, 1920, 2).mean(1) * LEVELS).astype(int)
    assert frame_levels[:, 1].tolist() == model  # moved back max_delay + 1 = 3 frames
    assert [round(w.start / F) for w in d.words_of("agent")] == [2, 3, 6, 8]
    assert (d.source["agent_lag"], d.source["agent_lag_from"], d.source["oracle_frames"]) == (3, "recorded max_delay",
                                                                                            "recorded")
    cfg = preset("tiny").replace(text_card=4000)
    assert training_example(d, FakeCodec(), default_tokenizer(), cfg)[1][8:14].tolist() == [3, 4000, 5, 6, 7, 3]
    # a feed the events do not give (here: one step later than recorded) is refused, saying where
    feed["oracle_tokens"] = [[f + 1, t] for f, t in feed["oracle_tokens"]]
    (tmp_path / "b").mkdir()
    shifted, _, _ = write_run(tmp_path / "b", lag=3, frames=[9, 9, 10, 10, None], feed=feed)
    with pytest.raises(DataError, match=r"at frame 9 the front-end was fed oracle token 3, but the run's oracle "
                                        r"events give 4000"):
        from_kame_run(shifted)
    (tmp_path / "c").mkdir()
    edited, _, _ = write_run(tmp_path / "c", lag=3, frames=[9, 8, 10, 10, None], feed=feed)
    with pytest.raises(DataError, match=r"oracle event 1 has frame 8: frames are ints >= 0 that do not decrease"):
        from_kame_run(edited)
    # a run whose front-end step failed: said (the record cannot tell if a failed step advanced it)
    doc = json.loads(out_json.read_text())
    doc["summary"] = {"frontend_failed_steps": 2}
    out_json.write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match=r"the front-end's step failed on 2 frame\(s\): they have no agent audio, "
                                         r"and the frames recorded after the first may be one step off"):
        assert from_kame_run(out_json).source["failed_steps"] == 2


def test_an_older_recording_is_estimated_and_says_so(tmp_path):
    out_json, _, _ = write_run(tmp_path)
    with pytest.warns(UserWarning, match=r"does not record its oracle events' frames \(estimated from their time "
                                         r"stamps\) nor its front-end's max_delay \(1 assumed: agent_lag 2\)"):
        d = from_kame_run(out_json)
    assert (d.source["agent_lag_from"], d.source["oracle_frames"]) == ("default", "estimated")
    with pytest.warns(UserWarning, match=r"does not record its oracle events' frames \(estimated from their time "
                                         r"stamps\); a run of this kame"):
        d = from_kame_run(out_json, agent_lag=2)  # (a lag given: only the frames are guessed)
    assert d.source["agent_lag_from"] == "given"


@pytest.mark.filterwarnings("ignore:.*does not record its oracle events:UserWarning")  # (an older recording)
def test_no_agent_audio_is_made_up_at_the_end(tmp_path):
    """The agent's last agent_lag frames were never recorded: the dialogue ends there (both
    channels), and the words and oracle events past that end are left out, not trained on."""
    out_json, user, model = write_run(tmp_path)
    doc = json.loads(out_json.read_text())
    doc["user_words"].append({"word": "late", "start": 1.5, "end": 1.55})  # heard in frame 18: past the end
    doc["agent_text"].append({"t": stamp(18), "text": " end"})  # output frame 17, the last one recorded
    doc["oracle"].insert(4, {"type": "oracle", "event": "reset", "prediction_id": 3, "t": stamp(17)})  # frame 18
    out_json.write_text(json.dumps(doc))
    d = from_kame_run(out_json)
    assert d.frames == T - LAG and d.audio.shape == ((T - LAG) * 1920, 2)
    assert not (d.audio[-1920:, 1] == 0).all()  # the last frame is the agent's, not made-up silence
    assert "late" not in [w.word for w in d.words]
    assert d.words_of("agent")[-1] == Word("agent", "end", 17 * F, (T - LAG) * F)
    assert [ev.frame for ev in d.oracle] == [10, 10, 11]
    codes, _ = training_example(d, FakeCodec(), default_tokenizer(), preset("tiny").replace(text_card=4000))
    assert codes[1:9].tolist() == codes_of(model).tolist()  # every agent target is what it made
    with pytest.raises(DataError, match=r"no more than the agent's lag \(20 frames = 38400 samples\): the "
                                        r"recording holds none of the agent's output"):
        from_kame_run(out_json, agent_lag=T)


@pytest.mark.filterwarnings("ignore:.*does not record its oracle events:UserWarning")  # (an older recording)
def test_a_wav_of_another_run_beside_the_json_is_refused(tmp_path):
    """A `kame run` stopped between its writes leaves its new OUT.wav beside the previous run's
    OUT.json: their lengths differ, and the pair is refused (was: one run's words over the other's audio)."""
    out_json, _, _ = write_run(tmp_path)
    from_kame_run(out_json)  # (the run's own pair: as long as it records)
    write_wav(tmp_path / "answer.wav", np.zeros((1920 * (T + 5), 2), np.float32), 24000)  # another run's
    with pytest.raises(DataError, match=r"answer.wav is 2.00 s long, but .*answer.json records a run of 1.60 s: "
                                        r"the two files are from different runs"):
        from_kame_run(out_json)
