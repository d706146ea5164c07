"""kame.train.synth: QA items -> spoken training dialogues with a simulated oracle (`kame data synth`)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from kame.backend.speech_text import CLEANING_VERSION
from kame.backend.tokenizer import default_tokenizer
from kame.backend.tts.base import TTS, TimedWord
from kame.train.data import DataError, read_dialogue
from kame.train.manifest import read_manifest
from kame.train.qa import QAItem
from kame.errors import BackendError
from kame.train.datacmd import MAX_FAILURES_IN_A_ROW, _check_llm
from kame.train.synth import SynthConfig, _check_voice, folder_name, synth_all, synth_dialogue
from tests.backend.scripted_llm import ScriptedLLM

SR = 24000
WORD_S, PAUSE_S, LEAD_S = 0.2, 0.1, 0.05


class WordTTS(TTS):
    """Each word a 0.2 s tone, 0.1 s apart, after 0.05 s of silence; a text with BOOM fails."""

    name = "words"

    def __init__(self, freq: float = 200.0) -> None:
        self.freq = freq
        self.texts: list[str] = []

    def synth_words(self, text):
        self.texts.append(text)
        if "BOOM" in text:
            raise RuntimeError("the voice broke")
        tokens = text.split()
        n = round((LEAD_S + len(tokens) * (WORD_S + PAUSE_S)) * SR)
        pcm = np.zeros(n, np.float32)
        timed = []
        for i, tok in enumerate(tokens):
            s = LEAD_S + i * (WORD_S + PAUSE_S)
            a, b = round(s * SR), round((s + WORD_S) * SR)
            pcm[a:b] = 0.3 * np.sin(2 * np.pi * self.freq * np.arange(b - a) / SR)
            timed.append(TimedWord(tok, s, s + WORD_S))
        return pcm, timed

    async def synthesize(self, text):  # (not used by the synthesizer)
        yield self.synth_words(text)[0]


class Voices:
    def __init__(self, **made) -> None:
        self.made = made

    def get(self, spec):
        return self.made[spec]


class ToneVoices(Voices):
    """kame.train.synth._Voices for a command's run: word-timed tones, not espeak (no voice loaded)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()

    def get(self, spec):
        return self.made.setdefault(spec, WordTTS(500.0 if "m3" in spec else 200.0))


def item(i: int, q: str = "What is the capital of France?", a: str = "The capital of France is Paris.") -> QAItem:
    return QAItem(id=f"qa-{i}", question=q, answer=a, source={"dataset": "qa"})


def synth(it, *, index=0, llm=None, cfg=None):
    return asyncio.run(synth_dialogue(it, index=index, user_tts=WordTTS(200.0), agent_tts=WordTTS(500.0), llm=llm,
                                      tokenizer=default_tokenizer(), cfg=cfg or SynthConfig()))


def rms(x):
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def test_one_dialogue_user_then_agent_with_words_where_the_audio_is():
    cfg = SynthConfig(lead_s=(0.3, 1.0), gap_s=(0.2, 0.8))
    d = synth(item(0), cfg=cfg)
    user, agent = d.words_of("user"), d.words_of("agent")
    assert [w.word for w in user] == d.source["user_text"].split()
    assert [w.word for w in agent] == d.source["agent_text"].split()
    assert 0.3 <= d.source["lead_s"] <= 1.0 and 0.2 <= d.source["gap_s"] <= 0.8
    assert user[0].start == pytest.approx(d.source["lead_s"] + LEAD_S)
    assert agent[0].start == pytest.approx(user[-1].end + d.source["gap_s"])  # the gap is word to word
    assert d.duration_s == pytest.approx(agent[-1].end + PAUSE_S + 0.5, abs=2 / SR)  # + the tail
    for ch, words, other in ((0, user, 1), (1, agent, 0)):
        for w in words:  # each word's span holds its speaker's tone and nothing on the other channel
            span = d.audio[round(w.start * SR) + 10:round(w.end * SR) - 10]
            assert rms(span[:, ch]) > 0.15 and rms(span[:, other]) == 0.0
        for a, b in zip(words, words[1:]):  # the pauses between words are silent
            assert rms(d.audio[round(a.end * SR) + 10:round(b.start * SR) - 10, ch]) == 0.0
    d.validate()
    # no simulator: one prediction, the true reply (hint 5) at the end of the user's turn
    assert [(ev.event, ev.hint) for ev in d.oracle] == [("reset", 5), ("append", None)]
    assert d.oracle[1].text == d.source["agent_text"]
    assert d.oracle[1].ids == default_tokenizer().encode(d.source["agent_text"])
    assert d.tokenizer_sha256 == default_tokenizer().sha256


def test_the_simulator_predicts_during_the_users_turn():
    q = "Which planet in our solar system is the largest one of all the planets we know of today?"
    llm = ScriptedLLM(auto=["Jupiter is the largest", " planet in our solar system."])
    d = synth(item(0, q=q), llm=llm)
    resets = [ev for ev in d.oracle if ev.event == "reset"]
    user = d.words_of("user")
    assert len(llm.calls) >= 3 and len(resets) == len(llm.calls) + 1
    assert all(ev.frame * 0.08 <= user[-1].end + 0.08 for ev in resets)  # all made while the user speaks
    assert resets[-1].hint == 5 and resets[0].hint == 0
    texts = [ev.text for ev in d.oracle if ev.event == "append"]
    assert texts[0] == "Jupiter is the largest planet in our solar system."
    assert texts[-1] == d.source["agent_text"]


def test_the_same_seed_and_index_give_the_same_layout_and_another_index_another():
    a, b, c = synth(item(0), index=3), synth(item(0), index=3), synth(item(0), index=4)
    assert (a.source["lead_s"], a.source["gap_s"]) == (b.source["lead_s"], b.source["gap_s"])
    assert np.array_equal(a.audio, b.audio) and a.words == b.words
    assert (a.source["lead_s"], a.source["gap_s"]) != (c.source["lead_s"], c.source["gap_s"])


def test_a_run_writes_a_manifest_resumes_and_survives_a_failing_item(tmp_path, caplog):
    voices = Voices(user=WordTTS(200.0), agent=WordTTS(500.0))
    cfg = SynthConfig(user_voices=("user",), agent_voice="agent")
    items = [item(0), item(1, q="Say BOOM please."), item(2), item(0, q="Again the same id?")]

    def run(**kw):
        return asyncio.run(synth_all(items, tmp_path, llm=None, tokenizer=default_tokenizer(), cfg=cfg,
                                     voices=voices, **kw))

    res = run()
    assert [r.status for r in res] == ["written", "failed", "written", "written"]
    assert "the voice broke" in res[1].error and "qa-1" in caplog.text
    assert [r.folder.name for r in res] == ["qa-0", "qa-1", "qa-2", "qa-0-2"]  # one id twice: two folders
    entries = read_manifest(tmp_path / "train.jsonl")
    assert [e.path.name for e in entries] == ["qa-0", "qa-0-2", "qa-2"] and all(e.hints == [5] for e in entries)
    assert read_dialogue(tmp_path / "qa-0-2").source["user_text"] == "Again the same id?"
    spoken = len(voices.made["user"].texts)
    res = run()  # again: what is there is skipped, the failed item is tried again
    assert [r.status for r in res] == ["skipped", "failed", "skipped", "skipped"]
    assert len(voices.made["user"].texts) == spoken + 1
    assert len(read_manifest(tmp_path / "train.jsonl")) == 3
    res = run(overwrite=True)
    assert [r.status for r in res] == ["written", "failed", "written", "written"]


def test_folder_names_and_voices_without_word_timings():
    assert folder_name("mmlu-pro/70 #3") == "mmlu-pro_70_3"
    with pytest.raises(DataError, match="no usable folder name"):
        folder_name("///")

    class Plain(TTS):
        name = "plain"

        async def synthesize(self, text):
            yield np.zeros(10, np.float32)

    with pytest.raises(DataError, match="no word timings"):
        _check_voice(Plain(), "plain:x")
    _check_voice(WordTTS(), "words")  # one that has them passes


def test_kame_data_synth_end_to_end_with_espeak(tmp_path, capsys):
    """The command as a user runs it: a JSONL file, real espeak voices, no simulator LLM."""
    from kame.cli import main
    from kame.model.loaders import load_frontend
    from kame.train.examples import training_example
    from tests.train._fakes import FakeCodec

    pytest.importorskip("espeakng_loader")
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in (
        {"question": "What is the capital of France?", "answer": "Paris is the capital of France."},
        {"question": "How many legs does a spider have?", "answer": "A spider has 8 legs."},
        {"question": "Who wrote Hamlet?", "answer": "William Shakespeare wrote it."})))
    out = tmp_path / "data"
    argv = ["data", "synth", str(qa), "-o", str(out), "--llm", "none", "--limit", "2",
            "--user-voice", "espeak:en-us+f2", "--agent-voice", "espeak:en-us+m3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| 2 | 0 | 0 |" in printed and "train.jsonl" in printed
    entries = read_manifest(out / "train.jsonl")
    assert len(entries) == 2
    d = read_dialogue(entries[1].path)
    assert [w.word for w in d.words_of("user")] == "How many legs does a spider have?".split()
    assert d.words_of("agent")[0].start > d.words_of("user")[-1].end
    model, _ = load_frontend("random:tiny", text_card=4000)
    codes, oracle = training_example(d, FakeCodec(), default_tokenizer(), model.cfg)
    assert codes.shape[-1] == d.frames and int((oracle == model.cfg.text_card).sum()) == 1  # one start token
    assert main(argv) == 0 and "| 0 | 2 | 0 |" in capsys.readouterr().out  # resumed: nothing to do


def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys):
    from kame.cli import main

    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "Why?", "answer": "Because."}) + "\n")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # argparse's error naming the option (was: exit status 1)
        main(["data", "synth", str(qa), "-o", str(tmp_path / "o"), "--limit", "0", "--llm", "none"])
    assert exit_.value.code == 2 and "argument --limit: must be >= 1, got 0" in capsys.readouterr().err
    assert main(["data", "synth", str(qa), "-o", str(tmp_path / "o"), "--start", "5", "--llm", "none"]) == 1
    assert "no items" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_too_many_failures_in_a_row_stop_the_run_with_the_manifest_written(tmp_path):
    voices = Voices(user=WordTTS(200.0), agent=WordTTS(500.0))
    cfg = SynthConfig(user_voices=("user",), agent_voice="agent")
    items = [item(0)] + [item(i, q="BOOM") for i in range(1, 1 + MAX_FAILURES_IN_A_ROW)] + [item(99)]
    with pytest.raises(DataError, match=f"{MAX_FAILURES_IN_A_ROW} items in a row failed.*the voice broke"):
        asyncio.run(synth_all(items, tmp_path, llm=None, tokenizer=default_tokenizer(), cfg=cfg, voices=voices))
    assert [e.path.name for e in read_manifest(tmp_path / "train.jsonl")] == ["qa-0"]
    assert not (tmp_path / "qa-99").exists()  # stopped before it


def test_the_simulator_llm_is_tried_before_the_run():
    class Down(ScriptedLLM):
        async def stream_chat(self, messages, **kw):
            raise BackendError("connection refused (http://localhost:9/v1)")
            yield ""

    with pytest.raises(DataError, match="'openai:x' failed a trial request.*connection refused"):
        asyncio.run(_check_llm(Down(), "openai:x", 5.0))
    asyncio.run(_check_llm(ScriptedLLM(auto=["OK"]), "openai:x", 5.0))  # one that answers passes


def _qa_file(tmp_path, n):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"What is {i} plus {i}?", "answer": f"It is {2 * i}."}) + "\n"
                          for i in range(n)))
    return qa


ESPEAK = ["--llm", "none", "--user-voice", "espeak:en-us+f2", "--user-voice", "espeak:en-029",
          "--user-voice", "espeak:en-us", "--agent-voice", "espeak:en-us+m3"]


def test_slices_of_a_set_get_what_the_whole_run_gives_and_one_manifest(tmp_path, caplog):
    from kame.cli import main

    pytest.importorskip("espeakng_loader")
    qa = _qa_file(tmp_path, 5)
    assert main(["data", "synth", str(qa), "-o", str(tmp_path / "all"), *ESPEAK]) == 0
    assert main(["data", "synth", str(qa), "-o", str(tmp_path / "part"), "--start", "3", *ESPEAK]) == 0
    assert main(["data", "synth", str(qa), "-o", str(tmp_path / "part"), "--limit", "2", *ESPEAK]) == 0
    whole = {e.path.name: read_dialogue(e.path) for e in read_manifest(tmp_path / "all" / "train.jsonl")}
    parts = {e.path.name: read_dialogue(e.path) for e in read_manifest(tmp_path / "part" / "train.jsonl")}
    assert sorted(parts) == sorted(set(whole) - {"qa_qa_2"})  # both slices listed; item 2 never made
    for name, d in parts.items():
        for key in ("lead_s", "gap_s", "user_tts", "index"):
            assert d.source[key] == whole[name].source[key], (name, key)
    assert len({d.source["user_tts"] for d in whole.values()}) > 1  # (the voices do differ between items)
    # resuming with other settings is warned about: the set would mix them
    caplog.clear()
    assert main(["data", "synth", str(qa), "-o", str(tmp_path / "part"), *ESPEAK[:-1], "espeak:en-gb-x-rp"]) == 0
    assert "other settings (agent_voice" in caplog.text


def test_a_slice_gives_an_item_the_audio_and_word_times_of_the_whole_run(tmp_path):
    """espeak-ng carried state from one utterance to the next: item 1 said after item 0 came out
    a few samples and ms apart from item 1 said first (a slice)."""
    from kame.cli import main

    pytest.importorskip("espeakng_loader")
    qa = _qa_file(tmp_path, 2)
    voices = ["--llm", "none", "--user-voice", "espeak:en-us", "--agent-voice", "espeak:en-us+m3"]
    assert main(["data", "synth", str(qa), "-o", str(tmp_path / "all"), *voices]) == 0
    assert main(["data", "synth", str(qa), "-o", str(tmp_path / "part"), "--start", "1", "--limit", "1", *voices]) == 0
    (part,) = [read_dialogue(e.path) for e in read_manifest(tmp_path / "part" / "train.jsonl")]
    whole = read_dialogue(tmp_path / "all" / part.folder.name)
    assert part.source["index"] == 1 and part.words == whole.words
    assert np.array_equal(part.audio, whole.audio)


def test_sigterm_ends_the_run_as_ctrl_c_does_with_its_manifest_and_settings_written(tmp_path, capsys, monkeypatch):
    """(was: killed at once, neither train.jsonl nor synth.json written: a rerun with another --seed
    mixed the set without the warning)"""
    import os
    import signal

    from kame.cli import main
    from kame.train import synth

    pytest.importorskip("espeakng_loader")
    qa = _qa_file(tmp_path, 4)
    written = []

    def write_then_sigterm(folder, d, **kw):  # SIGTERM once the second dialogue is written
        write(folder, d, **kw)
        written.append(folder)
        if len(written) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    write = synth.write_dialogue
    monkeypatch.setattr(synth, "write_dialogue", write_then_sigterm)
    previous = signal.signal(signal.SIGTERM, lambda *a: pytest.fail("SIGTERM reached the test's handler"))
    try:
        args = ["--llm", "none", "--user-voice", "espeak:en-us", "--agent-voice", "espeak:en-us+m3", "--seed", "5"]
        assert main(["data", "synth", str(qa), "-o", str(tmp_path / "o"), *args]) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "terminated (SIGTERM): 2 dialogues" in capsys.readouterr().out
    assert len(read_manifest(tmp_path / "o" / "train.jsonl")) == 2
    assert json.loads((tmp_path / "o" / "synth.json").read_text())["seed"] == 5


def test_voices_are_made_with_the_seed_if_the_tts_takes_one(monkeypatch):
    """kame data synth asks for repeatable speech: its seed goes to a TTS that takes one (espeak's
    default, seed=None, is the live TTS's: unseeded); a TTS without a seed keyword still works."""
    from kame import registry
    from kame.train.synth import _Voices

    pytest.importorskip("espeakng_loader")
    registry.check_spec("tts", "espeak")  # (the table loaded)
    monkeypatch.setitem(registry._ENTRIES["tts"], "_words", registry.Entry(lambda arg=None: WordTTS(), None, ""))
    voices = _Voices(seed=5)
    assert voices.get("espeak:en-us").seed == 5 and registry.create("tts", "espeak:en-us").seed is None
    assert isinstance(voices.get("_words"), WordTTS)


def test_a_voice_spec_s_own_seed_wins_over_the_run_s_seed(capsys):
    """The documented rule (kame data synth --help, docs/data.md): --seed seeds every voice whose
    spec sets no seed; `--user-voice "espeak:en-us;seed=3"` speaks with seed 3 whatever --seed is."""
    from kame.cli import main
    from kame.train.synth import _Voices

    pytest.importorskip("espeakng_loader")
    voices = _Voices(seed=7)  # (--seed 7)
    assert voices.get("espeak:en-us;seed=3").seed == 3 and voices.get("espeak:en-us").seed == 7
    with pytest.raises(SystemExit):
        main(["data", "synth", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "a spec's own ';seed=N' seeds that voice's speech in place of --seed" in said
    assert "except a voice whose spec sets its own (espeak:en-us;seed=3" in said


def test_a_bad_voice_or_output_folder_fails_before_any_item(tmp_path, capsys):
    from kame.cli import main

    pytest.importorskip("espeakng_loader")
    qa = _qa_file(tmp_path, 2)
    out = tmp_path / "o"
    assert main(["data", "synth", str(qa), "-o", str(out), *ESPEAK, "--user-voice", "espeak:no-such-voice"]) == 1
    assert "espeak:no-such-voice" in capsys.readouterr().err and not out.exists()  # (was: an empty folder left)
    assert main(["data", "synth", str(qa), "-o", str(out), *ESPEAK, "--tokenizer", str(tmp_path / "none")]) == 1
    assert "kame: error: " in capsys.readouterr().err and not out.exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["data", "synth", str(qa), "-o", str(blocker / "sub"), *ESPEAK]) == 1
    err = capsys.readouterr().err
    assert "cannot create the folder" in err and "is a file, not a folder" in err
    with pytest.raises(SystemExit):  # argparse: an unknown format or no --llm
        main(["data", "synth", str(qa), "-o", str(out), "--format", "gsm", "--llm", "none"])
    with pytest.raises(SystemExit):
        main(["data", "synth", str(qa), "-o", str(out)])
    assert "--llm" in capsys.readouterr().err


def test_jobs_overlap_the_simulator_calls_and_keep_the_items_order(tmp_path):
    """--jobs 3: three dialogues wait on the LLM at once (a hosted LLM serves them together)."""

    class Gate(ScriptedLLM):
        def __init__(self):
            super().__init__()
            self.waiting = 0
            self.most = 0
            self.release = asyncio.Event()

        async def stream_chat(self, messages, **kw):
            self.waiting += 1
            self.most = max(self.most, self.waiting)
            if self.most >= 3:
                self.release.set()
            await self.release.wait()  # nobody answers until three ask at once (one at a time: never)
            self.waiting -= 1
            yield "A short guess at the reply."

    voices = Voices(user=WordTTS(200.0), agent=WordTTS(500.0))
    cfg = SynthConfig(user_voices=("user",), agent_voice="agent")
    q = "Which planet in our solar system is the largest one of all?"
    items = [item(i, q=q) for i in range(4)]
    llm = Gate()

    async def run():
        return await asyncio.wait_for(synth_all(items, tmp_path, llm=llm, tokenizer=default_tokenizer(), cfg=cfg,
                                                voices=voices, jobs=3), 60)

    res = asyncio.run(run())
    assert llm.most >= 3 and [r.status for r in res] == ["written"] * 4
    assert [r.folder.name for r in res] == ["qa-0", "qa-1", "qa-2", "qa-3"]


ANSWERS = ["The capital of France is Paris, a city on the Seine.", "A spider has eight legs and two body parts.",
           "Water boils at one hundred degrees at sea level.", "The largest planet we know of is Jupiter, by far.",
           "Light from the Sun takes about eight minutes to reach us."]


def test_random_guidance_dialogues_draw_the_other_items_replies(tmp_path):
    """--llm random's layer: each dialogue's predictions before the user's turn ends are other
    items' replies, its last one its own (use_hint, read back from disk), drawn from the seed
    and the item's index."""
    from kame.train.batching import protected_events
    from kame.train.oracle_sim import RandomReplies

    q = "Tell me about the world."
    items = [item(i, q=q, a=a) for i, a in enumerate(ANSWERS)]
    pool = RandomReplies(ANSWERS, default_tokenizer())
    cfg = SynthConfig(user_voices=("user",), agent_voice="agent")

    def run(out):
        voices = Voices(user=WordTTS(200.0), agent=WordTTS(500.0))
        res = asyncio.run(synth_all(items, out, llm=None, tokenizer=default_tokenizer(), cfg=cfg, voices=voices,
                                    random_replies=pool))
        assert [r.status for r in res] == ["written"] * 5
        return [read_dialogue(out / f"qa-{i}") for i in range(5)]

    dialogues = run(tmp_path / "a")
    for i, d in enumerate(dialogues):
        texts = [ev.text for ev in d.oracle if ev.event == "append"]
        resets = [ev for ev in d.oracle if ev.event == "reset"]
        assert len(texts) >= 3 and texts[-1] == ANSWERS[i] and d.source["llm"] == "random"
        assert set(texts[:-1]) <= set(ANSWERS) - {ANSWERS[i]} and len(set(texts[:-1])) == len(texts) - 1
        assert [r.use_hint for r in resets] == [False] * (len(resets) - 1) + [True]
        assert protected_events(d.oracle) == {len(d.oracle) - 2}
    assert len({tuple(ev.text for ev in d.oracle) for d in dialogues}) == 5
    again = run(tmp_path / "b")
    assert [d.oracle for d in again] == [d.oracle for d in dialogues]  # seeded per item


def test_kame_data_synth_llm_random_end_to_end(tmp_path, capsys):
    from kame.cli import main

    pytest.importorskip("espeakng_loader")
    qa = tmp_path / "qa.jsonl"
    q = "Tell me something you know about the world."
    qa.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for a in ANSWERS))
    out = tmp_path / "data"
    argv = ["data", "synth", str(qa), "-o", str(out), "--llm", "random", "--start", "3", "--limit", "1",
            "--user-voice", "espeak:en-us", "--agent-voice", "espeak:en-us+m3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| 1 | 0 | 0 |" in printed and "| hint level | 0 | 5 |" in printed
    (entry,) = read_manifest(out / "train.jsonl")
    d = read_dialogue(entry.path)
    texts = [ev.text for ev in d.oracle if ev.event == "append"]
    # a slice draws from the whole file's replies (items 0-2 and 4 are not in the slice)
    assert texts[-1] == ANSWERS[3] and set(texts[:-1]) <= set(ANSWERS) - {ANSWERS[3]} and texts[:-1]
    settings = json.loads((out / "synth.json").read_text())
    # (the cleaner's version: kame train warns of a set another cleaned; was: none recorded)
    assert settings["llm"] == "random" and settings["cleaning"] == CLEANING_VERSION
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"question": q, "answer": ANSWERS[0]}) + "\n")
    assert main(["data", "synth", str(one), "-o", str(tmp_path / "o"), "--llm", "random"]) == 1
    assert "draws the predictions from the other replies of" in capsys.readouterr().err


def test_a_bad_llm_spec_fails_before_the_settings_are_recorded(tmp_path, capsys):
    """(a bad --llm used to leave synth.json naming it, so the corrected rerun warned of mixed settings)"""
    from kame.cli import main

    qa = _qa_file(tmp_path, 2)
    out = tmp_path / "o"
    assert main(["data", "synth", str(qa), "-o", str(out), "--llm", "bogus:x"]) == 1
    assert "bogus" in capsys.readouterr().err and not (out / "synth.json").exists()


def test_a_multi_turn_dialogue_asks_the_items_one_after_another():
    q0, q1 = "What is the capital of France?", "And how many people live there?"
    llm = ScriptedLLM(auto=["Some thought on the matter at hand."])
    d = synth([item(0, q=q0), item(1, q=q1, a="About two million people live in the city.")], llm=llm)
    u, a = d.words_of("user"), d.words_of("agent")
    assert [w.word for w in u] == (q0 + " " + q1).split()
    assert [w.word for w in a] == ("The capital of France is Paris. About two million people live in the city.").split()
    first_end = a[5].end  # the agent's first answer ends before the second question starts, a pause after
    assert u[6].start > first_end + 0.3 and a[0].start > u[5].end and a[6].start > u[-1].end
    for w in u + a:  # each word where its channel has sound, the other channel's speaker silent there
        ch = 0 if w.speaker == "user" else 1
        seg = d.audio[round(w.start * SR): round(w.end * SR)]
        assert rms(seg[:, ch]) > 0.1 and rms(seg[:, 1 - ch]) < 1e-3, w
    resets = [ev for ev in d.oracle if ev.event == "reset"]
    assert [ev.prediction for ev in resets] == list(range(len(resets)))  # ids run on over the turns
    true = [ev for ev in resets if ev.use_hint]
    assert [ev.frame for ev in true] == [int(u[5].end / 0.08), int(u[-1].end / 0.08)]  # each turn's end
    texts = [ev.text for ev in d.oracle if ev.event == "append"]
    assert "The capital of France is Paris." in texts and texts[-1] == "About two million people live in the city."
    second = [c for c in llm.calls if "And how" in c.messages[1].content]
    assert second and "User: What is the capital of France?\nAssistant: The capital of France is Paris." in \
        second[0].messages[1].content  # the second turn's predictions see the first
    assert [t["item"] for t in d.source["turns"]] == ["qa-0", "qa-1"] and "agent_text" not in d.source


def test_kame_data_synth_turns_end_to_end(tmp_path, capsys):
    from kame.cli import main
    from kame.model.loaders import load_frontend
    from kame.train.examples import training_example
    from tests.train._fakes import FakeCodec

    pytest.importorskip("espeakng_loader")
    qa = _qa_file(tmp_path, 3)
    out = tmp_path / "data"
    assert main(["data", "synth", str(qa), "-o", str(out), "--turns", "2", *ESPEAK]) == 0
    assert "2 dialogues of up to 2 turns (3 items)" in capsys.readouterr().out
    entries = read_manifest(out / "train.jsonl")
    assert [e.path.name for e in entries] == ["qa_qa_0+1", "qa_qa_2"]  # the last one has the item left over
    d = read_dialogue(entries[0].path)
    assert [w.word for w in d.words_of("user")] == "What is 0 plus 0? What is 1 plus 1?".split()
    model, _ = load_frontend("random:tiny", text_card=4000)
    codes, oracle = training_example(d, FakeCodec(), default_tokenizer(), model.cfg)
    assert codes.shape[-1] == d.frames and int((oracle == model.cfg.text_card).sum()) == 2  # a prediction a turn
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # argparse's error naming the option (was: exit status 1)
        main(["data", "synth", str(qa), "-o", str(tmp_path / "x"), "--turns", "0", "--llm", "none"])
    assert exit_.value.code == 2 and "argument --turns: must be >= 1, got 0" in capsys.readouterr().err


def test_random_guidance_never_shows_a_later_turns_answer_early():
    """(a drawn prediction in turn 1 could be turn 2's true reply: the front-end would be told the
    answer to what is not asked yet)"""
    from kame.train.oracle_sim import RandomReplies

    pool = RandomReplies(ANSWERS, default_tokenizer())
    q = "Tell me about the world."
    seen = set()
    for index in range(12):
        d = asyncio.run(synth_dialogue([item(0, q=q, a=ANSWERS[0]), item(1, q=q, a=ANSWERS[1])], index=index,
                                       user_tts=WordTTS(200.0), agent_tts=WordTTS(500.0), llm=None,
                                       tokenizer=default_tokenizer(), cfg=SynthConfig(), random_replies=pool))
        appends = [ev.text for ev in d.oracle if ev.event == "append"]
        drawn = [t for t, ev in zip(appends, [e for e in d.oracle if e.event == "reset"]) if not ev.use_hint]
        assert drawn and not set(drawn) & {ANSWERS[0], ANSWERS[1]}
        seen |= set(drawn)
    assert seen == set(ANSWERS[2:])


def test_a_rerun_removes_the_temporaries_a_killed_run_left_where_it_writes(tmp_path, monkeypatch, capsys):
    """A run killed outright (SIGKILL) leaves its hidden .NAME.RANDOM.tmp files: the next run removes
    those an hour old in OUT (of train.jsonl, synth.json) and in its dialogues' folders, and says so
    on stderr; a fresh one (a run under way), a user's look-alikes and other folders are left
    (was: never removed)."""
    import kame.train.synth as synth_mod
    from kame.cli import main

    from ._stale import check_swept, plant

    monkeypatch.setattr(synth_mod, "_Voices", ToneVoices)
    qa, out = _qa_file(tmp_path, 2), tmp_path / "set"
    argv = ["data", "synth", str(qa), "-o", str(out), "--llm", "none"]
    assert main(argv) == 0
    first = sorted(out.glob("*/dialogue.json"))[0].parent
    stale, kept = plant(out, "train.jsonl")
    more, keep = plant(first, "audio.wav")  # (a dialogue there: skipped, its folder swept all the same)
    mine, _ = plant(out / "mine", "audio.wav")  # (not a dialogue of this run's: not looked into)
    capsys.readouterr()
    assert main(argv) == 0
    check_swept("kame data synth", stale + more, kept + keep + mine, capsys.readouterr().err)
    assert main(argv) == 0 and "temporary file" not in capsys.readouterr().err  # (nothing more to remove)


def test_data_oracle_random_redraws_what_data_synth_random_drew(tmp_path, monkeypatch, capsys):
    """`kame data oracle --llm random --seed S` on a `kame data synth --llm random --seed S` set
    gives each dialogue the oracle synth gave it, for a set of more than 10 items too, whose manifest
    (folder-name order: qa_0, qa_1, qa_10, ...) is not in the QA file's order (was: every oracle
    redrawn otherwise: the pool's order was the order its replies came in)."""
    from kame.cli import main
    from kame.train import synth
    from kame.train.data import read_dialogue
    from kame.train.manifest import read_manifest

    monkeypatch.setattr(synth, "_Voices", ToneVoices)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"Please tell me what {i} plus {i} makes today?",
                                      "answer": f"It is {2 * i}, since {i} plus {i} makes {2 * i}."}) + "\n"
                          for i in range(12)))
    out = tmp_path / "o"
    assert main(["data", "synth", str(qa), "-o", str(out), "--llm", "random", "--seed", "3"]) == 0
    folders = [e.path for e in read_manifest(out / "train.jsonl")]
    assert [f.name for f in folders][:3] == ["qa_qa_0", "qa_qa_1", "qa_qa_10"]  # (not the file's order)
    drawn = {f.name: read_dialogue(f, audio=False).oracle for f in folders}
    assert sum(ev.event == "append" for o in drawn.values() for ev in o) > 2 * len(folders)  # (other replies too)
    assert main(["data", "oracle", str(out), "--llm", "random", "--seed", "3"]) == 0
    capsys.readouterr()
    assert {f.name: read_dialogue(f, audio=False).oracle for f in folders} == drawn


def test_a_sigterm_while_the_run_is_set_up_exits_143_with_nothing_written(tmp_path, monkeypatch, capsys):
    """SIGTERM before the first item (the QA file read, the voices tried): noted, then the command
    ends with exit 143 and a line saying so, and makes no -o folder (was: killed by the signal,
    nothing said; docs/data.md promises 143)."""
    import os
    import signal

    from kame.cli import main
    from kame.train import synth

    monkeypatch.setattr(synth, "_Voices", ToneVoices)
    check, tried = synth._check_voice, []

    def check_then_sigterm(*a):  # (one SIGTERM, as the first voice is tried: a second quits at once)
        tried.append(check(*a))
        if len(tried) == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(synth, "_check_voice", check_then_sigterm)
    previous = signal.signal(signal.SIGTERM, lambda *a: pytest.fail("SIGTERM reached the test's handler"))
    try:
        assert main(["data", "synth", str(_qa_file(tmp_path, 2)), "-o", str(tmp_path / "o"), "--llm", "none"]) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "terminated (SIGTERM): before the first item; nothing written" in capsys.readouterr().out
    assert not (tmp_path / "o").exists() and len(tried) > 1  # (the set-up went on: the signal only noted)
