"""kame.train.reoracle (`kame data oracle`): a new simulated oracle for dialogues that exist,
their audio and codes cache untouched; turns from the words (multi-turn too)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from kame.backend.speech_text import CLEANING_VERSION
from kame.backend.tokenizer import default_tokenizer
from kame.errors import BackendError
from kame.train.data import CODES, DataError, Dialogue, OracleEvent, Word, read_dialogue, write_dialogue, write_meta
from kame.train.manifest import read_manifest, write_manifest
from kame.train.oracle_sim import SimOracleConfig, stale_cleaning
from kame.train.reoracle import answered_turns, dialogue_oracle, reoracle_all, turns
from tests.backend.scripted_llm import ScriptedLLM

REPLIES = ["The capital of France is Paris, a city on the Seine.", "A spider has eight legs and two body parts.",
           "Water boils at one hundred degrees at sea level.", "The largest planet we know of is Jupiter, by far.",
           "Light from the Sun takes about eight minutes to reach us."]


def spoken(speaker: str, text: str, start: float, step: float = 0.3) -> list[Word]:
    return [Word(speaker, w, start + i * step, start + i * step + 0.25) for i, w in enumerate(text.split())]


def one_turn(i: int) -> Dialogue:
    user = spoken("user", "Tell me one thing you know about the world today.", 0.5)
    agent = spoken("agent", REPLIES[i], user[-1].end + 0.4)
    T = int((agent[-1].end + 0.5) / 0.08) + 1
    tok = default_tokenizer()
    # the oracle kame data synth --llm none gives: the true reply at the turn's end
    f = int(user[-1].end / 0.08)
    oracle = [OracleEvent(f, "reset", prediction=0, hint=5), OracleEvent(f, "append", tok.encode(REPLIES[i]), REPLIES[i])]
    return Dialogue(np.full((T * 1920, 2), 0.01, np.float32), user + agent, oracle, tok.sha256,
                    {"kind": "kame data synth", "index": 10 + i, "llm": None})


def make_set(root, n=5):
    folders = [write_dialogue(root / f"d{i}", one_turn(i)) for i in range(n)]
    for f in folders:  # a codes cache, to see that it stays
        (f / CODES).write_bytes(b"codes of the audio")
    write_manifest(root / "train.jsonl", folders)
    return folders


def test_kame_data_oracle_random_rewrites_only_the_oracle(tmp_path, capsys):
    from kame.cli import main

    folders = make_set(tmp_path)
    before = {f: ((f / "audio.wav").read_bytes(), (f / CODES).stat().st_mtime_ns) for f in folders}
    assert [e.predictions for e in read_manifest(tmp_path / "train.jsonl")] == [1] * 5
    assert main(["data", "oracle", str(tmp_path), "--llm", "random", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "| 5 | 0 |" in out and "| hint level | 0 | 5 |" in out
    for i, f in enumerate(folders):
        assert (f / "audio.wav").read_bytes() == before[f][0] and (f / CODES).stat().st_mtime_ns == before[f][1]
        d = read_dialogue(f)
        texts = [ev.text for ev in d.oracle if ev.event == "append"]
        resets = [ev for ev in d.oracle if ev.event == "reset"]
        assert texts[-1] == REPLIES[i] and len(texts) >= 3
        assert set(texts[:-1]) <= set(REPLIES) - {REPLIES[i]}  # the set's other replies
        assert [(r.hint, r.use_hint) for r in resets] == [(0, False)] * (len(resets) - 1) + [(5, True)]
        assert d.source["oracle"]["llm"] == "random" and d.source["index"] == 10 + i and d.source["llm"] == "random"
    entries = read_manifest(tmp_path / "train.jsonl")  # written again: the counts are the new oracle's
    assert all(e.predictions >= 3 and e.hints == [0, 5] for e in entries)
    first = [read_dialogue(f).oracle for f in folders]
    assert main(["data", "oracle", str(tmp_path / "train.jsonl"), "--llm", "random", "--seed", "4"]) == 0
    assert [read_dialogue(f).oracle for f in folders] == first  # seeded
    assert main(["data", "oracle", str(tmp_path), "--llm", "none"]) == 0  # back to the true reply only
    assert all([ev.hint for ev in read_dialogue(f).oracle if ev.event == "reset"] == [5] for f in folders)


def test_turns_and_a_multi_turn_dialogue_gets_one_oracle_per_answered_turn(tok):
    words = (spoken("user", "Hi there, how are you doing?", 0.2) + spoken("agent", "Fine, thanks. And you?", 2.2)
             + spoken("user", "Good. What is the capital of France, please?", 4.0)
             + spoken("agent", "It is Paris.", 6.6) + spoken("user", "Thanks.", 8.0))
    assert [(spk, len(ws)) for spk, ws in turns(words[::-1])] == [("user", 6), ("agent", 4), ("user", 8),
                                                                    ("agent", 3), ("user", 1)]
    answered = answered_turns(words)
    assert [(len(u), reply, [s for s, _ in hist]) for u, reply, hist in answered] == [
        (6, "Fine, thanks. And you?", []), (8, "It is Paris.", ["user", "agent"])]
    d = Dialogue(np.zeros((110 * 1920, 2), np.float32), words)
    llm = ScriptedLLM(auto=["Something to say."])
    events = asyncio.run(dialogue_oracle(d, llm=llm, tokenizer=tok, cfg=SimOracleConfig()))
    resets = [ev for ev in events if ev.event == "reset"]
    assert [ev.prediction for ev in resets] == list(range(len(resets)))  # ids run on over the turns
    ends = [ev.frame for ev in resets if ev.hint == 5]
    assert ends == [int(words[5].end / 0.08), int(words[17].end / 0.08)]  # each answered turn's end
    assert [ev.text for ev in events if ev.event == "append" and ev.frame in ends] == ["Fine, thanks. And you?",
                                                                                       "It is Paris."]
    second = llm.calls[-1].messages[1].content  # the second turn's predictions see the first as history
    assert "User: Hi there, how are you doing?\nAssistant: Fine, thanks. And you?" in second
    d.oracle, d.tokenizer_sha256 = events, tok.sha256
    d.validate()
    # each turn's true reply is marked, so the augmentation keeps every turn's (not only the last)
    from kame.train.batching import protected_events

    assert sorted(events[n].frame for n in protected_events(events)) == ends


def true_replies(words, frames: int = 200) -> list[tuple[int, str]]:
    """(frame, text) of the true reply of each answered turn: the oracle with no simulator."""
    d = Dialogue(np.zeros((frames * 1920, 2), np.float32), words)
    events = asyncio.run(dialogue_oracle(d, llm=None, tokenizer=default_tokenizer(), cfg=SimOracleConfig()))
    return [(ev.frame, ev.text) for ev in events if ev.event == "append"]


def test_a_user_backchannel_in_the_agents_reply_neither_splits_it_nor_gets_an_oracle():
    user = spoken("user", "What do you know about Paris?", 0.2)
    agent = spoken("agent", "Paris is the capital of France, a city on the Seine with two million people.", 2.4)
    uh_huh = [Word("user", "uh-huh", agent[4].start + 0.1, agent[4].end + 0.2)]  # said over "France,"
    words = user + agent + uh_huh
    assert [(spk, len(ws)) for spk, ws in turns(words)] == [("user", 6), ("agent", 15)]
    assert [(len(u), reply) for u, reply, _ in answered_turns(words)] == [(6, " ".join(w.word for w in agent))]
    assert true_replies(words) == [(int(user[-1].end / 0.08), " ".join(w.word for w in agent))]


def test_an_agent_backchannel_in_a_long_user_turn_does_not_split_it():
    user = spoken("user", "So I was wondering, since we are going to Paris next week, what the weather is like there?",
                  0.2)
    yeah = [Word("agent", "Yeah.", user[6].start + 0.05, user[6].end + 0.1)]  # said over "are"
    reply = spoken("agent", "It is usually mild in spring, so bring a light coat.", user[-1].end + 0.5)
    words = user + yeah + reply
    assert [(spk, len(ws)) for spk, ws in turns(words)] == [("user", 18), ("agent", 11)]
    (heard, text, history), = answered_turns(words)
    assert heard == user and text == " ".join(w.word for w in reply) and history == []
    assert true_replies(words) == [(int(user[-1].end / 0.08), text)]  # answered once, the whole turn heard
    # the user's words that go on over the backchannel stay the user's, short as they are
    right = [Word("user", "right?", yeah[0].end - 0.05, yeah[0].end + 0.3)]
    words = user[:7] + yeah + right + reply
    assert [(spk, [w.word for w in ws][-2:]) for spk, ws in turns(words)] == [("user", ["are", "right?"]),
                                                                             ("agent", ["light", "coat."])]


def test_a_short_answer_after_the_other_speaker_stopped_is_a_turn():
    words = (spoken("user", "How many legs has a spider?", 0.2) + spoken("agent", "Eight.", 2.2)  # a short reply
             + spoken("user", "And can you tell me more about them?", 2.9)
             + spoken("agent", "They are arachnids, not insects. Shall I go on?", 5.6))
    words += [Word("user", "mm", words[-4].start, words[-4].end)]  # a backchannel over "insects."
    words += spoken("user", "Yes.", words[-2].end) + spoken("agent", "They spin silk from their bodies.", 9.5)
    assert [(spk, " ".join(w.word for w in ws)) for spk, ws in turns(words)] == [
        ("user", "How many legs has a spider?"), ("agent", "Eight."), ("user", "And can you tell me more about them?"),
        ("agent", "They are arachnids, not insects. Shall I go on?"), ("user", "Yes."),
        ("agent", "They spin silk from their bodies.")]
    assert [text for _, text in true_replies(words)] == ["Eight.", "They are arachnids, not insects. Shall I go on?",
                                                        "They spin silk from their bodies."]


def said(ws: list[Word]) -> str:
    return " ".join(w.word for w in ws)


def test_a_short_turn_that_the_other_speakers_next_words_overlap_is_a_turn():
    """(the other speaker answering early, over its last word, does not make it a backchannel)"""
    italy = spoken("user", "What is the capital of Italy?", 0.2)
    rome = spoken("agent", "It is Rome.", italy[-1].end + 0.4)
    france = spoken("user", "And France?", rome[-1].end + 1.0)
    paris = spoken("agent", "Paris, of course.", france[0].start + 0.1)  # starts 0.1 s into "And"
    words = italy + rome + france + paris
    assert [(spk, said(ws)) for spk, ws in turns(words)] == [
        ("user", said(italy)), ("agent", "It is Rome."), ("user", "And France?"), ("agent", "Paris, of course.")]
    assert [(said(u), reply, len(hist)) for u, reply, hist in answered_turns(words)] == [
        (said(italy), "It is Rome.", 0), ("And France?", "Paris, of course.", 2)]
    assert true_replies(words) == [(int(italy[-1].end / 0.08), "It is Rome."),
                                   (int(france[-1].end / 0.08), "Paris, of course.")]
    # "Okay, thanks." over the agent's last word, then the agent's "You're welcome."
    reply = spoken("agent", "Paris is the capital of France.", italy[-1].end + 0.4)
    thanks = spoken("user", "Okay, thanks.", reply[-1].start + 0.1)
    welcome = spoken("agent", "You're welcome.", thanks[-1].end + 0.2)
    assert [(spk, said(ws)) for spk, ws in turns(italy + reply + thanks + welcome)] == [
        ("user", said(italy)), ("agent", said(reply)), ("user", "Okay, thanks."), ("agent", "You're welcome.")]
    # "wait, what?" over the agent's last word: the agent stops, then answers it
    what = spoken("user", "wait, what?", reply[-1].start + 0.1)
    again = spoken("agent", "I said Paris.", what[-1].end + 0.6)
    assert [(said(u), r) for u, r, _ in answered_turns(italy + reply + what + again)] == [
        (said(italy), said(reply)), ("wait, what?", "I said Paris.")]


@pytest.mark.parametrize("into", [0.1, 0.27])  # into "Well,", or in the pause after it
def test_a_backchannel_as_the_reply_starts_leaves_the_reply_whole_and_the_question_where_it_ended(into):
    question = spoken("user", "Where is the Louvre?", 0.2)
    reply = spoken("agent", "Well, it is in Paris, by the Seine.", question[-1].end + 0.3)
    mm_hm = [Word("user", "mm-hm", reply[0].start + into, reply[0].start + into + 0.3)]
    words = question + reply + mm_hm
    assert [(spk, said(ws)) for spk, ws in turns(words)] == [("user", "Where is the Louvre?"), ("agent", said(reply))]
    (heard, text, _), = answered_turns(words)
    assert heard == question and text == "Well, it is in Paris, by the Seine."
    assert true_replies(words) == [(int(question[-1].end / 0.08), text)]  # the turn ends at "Louvre?"


def test_an_interruption_keeps_its_first_words_and_the_interrupted_reply_stays_whole():
    question = spoken("user", "Tell me about the city of Lyon.", 0.2)
    reply = spoken("agent", "Paris is the capital of France, on the Seine.", question[-1].end + 0.4)
    # the user breaks in 0.1 s into "on"; the agent says "on the Seine." over it, then stops
    interruption = spoken("user", "wait, what? I meant Lyon, not Paris.", reply[6].start + 0.1)
    answer = spoken("agent", "Sorry, Lyon is in the south of France.", interruption[-1].end + 0.4)
    words = question + reply + interruption + answer
    assert [(spk, said(ws)) for spk, ws in turns(words)] == [
        ("user", said(question)), ("agent", said(reply)), ("user", "wait, what? I meant Lyon, not Paris."),
        ("agent", said(answer))]
    assert [(said(u), r) for u, r, _ in answered_turns(words)] == [(said(question), said(reply)),
                                                                   (said(interruption), said(answer))]
    assert [f for f, _ in true_replies(words)] == [int(question[-1].end / 0.08), int(interruption[-1].end / 0.08)]
    # begun in the pause before "on", it cuts the reply there: "on the Seine." said over it is left out
    interruption = spoken("user", "wait, what? I meant Lyon, not Paris.", reply[6].start - 0.03)
    words = question + reply + interruption + spoken("agent", "Sorry, Lyon it is.", interruption[-1].end + 0.4)
    assert [said(ws) for _, ws in turns(words)][1:3] == [said(reply[:6]), "wait, what? I meant Lyon, not Paris."]


def test_a_failing_simulator_keeps_the_old_oracle_and_is_reported(tmp_path):
    folders = make_set(tmp_path, n=2)

    class Down(ScriptedLLM):
        async def stream_chat(self, messages, **kw):
            raise BackendError("connection refused")
            yield ""

    entries = read_manifest(tmp_path / "train.jsonl")
    res = asyncio.run(reoracle_all(entries, llm=Down(), tokenizer=default_tokenizer(), cfg=SimOracleConfig(),
                                   spec="openai:x"))
    assert [s for _, s, _ in res] == ["failed", "failed"] and "connection refused" in res[0][2]
    assert read_dialogue(folders[0]).oracle == one_turn(0).oracle  # as it was


def test_bad_input_is_refused_by_name(tmp_path, capsys):
    from kame.cli import main

    assert main(["data", "oracle", str(tmp_path / "nope"), "--llm", "random"]) == 1
    assert "data oracle: no manifest at" in capsys.readouterr().err
    make_set(tmp_path / "one", n=1)
    assert main(["data", "oracle", str(tmp_path / "one"), "--llm", "random"]) == 1
    assert "draws the predictions from the other replies of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # (argparse: kame.cliargs.more_than)
        main(["data", "oracle", str(tmp_path / "one"), "--llm", "none", "--interval", "0"])
    assert exit_.value.code == 2 and "argument --interval: must be > 0, got 0" in capsys.readouterr().err
    d = read_dialogue(tmp_path / "one" / "d0")
    n = d.samples
    d.audio = np.zeros((n + 1920 * 3, 2), np.float32)  # other audio: write_dialogue's job, not write_meta's
    with pytest.raises(DataError, match="write_meta keeps the audio"):
        write_meta(d)
    assert json.loads((tmp_path / "one" / "d0" / "dialogue.json").read_text())["samples"] == n


def test_an_unreadable_dialogue_fails_alone_and_the_manifest_says_the_new_oracle(tmp_path, capsys):
    from kame.cli import main
    from kame.paths import file_sha256

    folders = make_set(tmp_path)
    (tmp_path / "synth.json").write_text(json.dumps({"llm": "openai:x", "seed": 5, "agent_voice": "piper"}))
    assert "kame data oracle" in stale_cleaning(tmp_path / "train.jsonl")  # (a set recording no cleaning)
    old = read_manifest(tmp_path / "train.jsonl")
    old_meta = (folders[2] / "dialogue.json").read_text()
    (folders[2] / "dialogue.json").write_text("{ not json")
    assert main(["data", "oracle", str(tmp_path), "--llm", "none", "--seed", "7"]) == 1
    out = capsys.readouterr().out
    assert "| 4 | 1 |" in out and "failed: d2" in out, out
    assert [ev.use_hint for ev in read_dialogue(folders[0]).oracle if ev.event == "reset"][-1] is True
    # the manifest is written again: the broken one keeps its line without a sha256, the others' are new
    new = read_manifest(tmp_path / "train.jsonl", check=False)
    assert [e.path.name for e in new] == [e.path.name for e in old] and new[2].meta_sha256 is None
    assert new[2].predictions == old[2].predictions
    assert all(new[i].meta_sha256 == file_sha256(folders[i] / "dialogue.json") for i in (0, 1, 3, 4))
    # the set's record says what its oracle is now; synth's own seed (voices, layout) stays
    settings = json.loads((tmp_path / "synth.json").read_text())
    assert (settings["llm"], settings["seed"], settings["oracle_seed"], settings["agent_voice"]) == ("none", 5, 7, "piper")
    # ... but not the cleaner: d2 keeps its old oracle, so kame train still warns (was: cleaning recorded
    # after any dialogue was written, and the warning went)
    assert "cleaning" not in settings and "kame data oracle" in stale_cleaning(tmp_path / "train.jsonl")
    # (said as possibly a run that did not finish: was "made before kame recorded it", of a record just written)
    assert "or a `kame data oracle` run over it did not finish" in stale_cleaning(tmp_path / "train.jsonl")
    (folders[2] / "dialogue.json").write_text(json.dumps(json.loads(old_meta)))  # (d2 readable again)
    assert main(["data", "oracle", str(tmp_path), "--llm", "none", "--seed", "7"]) == 0
    settings = json.loads((tmp_path / "synth.json").read_text())
    # every dialogue cleaned anew: the cleaner its text was cleaned with is recorded, kame train warns no more
    assert settings["cleaning"] == CLEANING_VERSION and stale_cleaning(tmp_path / "train.jsonl") is None


def test_a_simulator_that_fails_its_trial_changes_nothing(tmp_path, capsys, monkeypatch):
    from kame.cli import main

    make_set(tmp_path, n=2)
    (tmp_path / "synth.json").write_text(json.dumps({"llm": "none", "seed": 0}))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.json*")}
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # (nothing listens there)
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    assert main(["data", "oracle", str(tmp_path), "--llm", "openai:foo"]) == 1
    assert "failed a trial request" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.json*")} == before


def test_a_new_oracle_is_a_new_manifest_so_a_training_run_does_not_resume_on_it(tmp_path):
    """(the manifest's counts can stay the same under a new oracle: its lines carry each
    dialogue.json's sha256, so kame train's resume check, on the manifest's sha256, sees it)"""
    from kame.cli import main
    from kame.paths import file_sha256

    make_set(tmp_path)
    assert main(["data", "oracle", str(tmp_path), "--llm", "random", "--seed", "1"]) == 0
    before = file_sha256(tmp_path / "train.jsonl")
    counts = [(e.predictions, e.hints) for e in read_manifest(tmp_path / "train.jsonl")]
    assert main(["data", "oracle", str(tmp_path), "--llm", "random", "--seed", "2"]) == 0
    assert [(e.predictions, e.hints) for e in read_manifest(tmp_path / "train.jsonl")] == counts  # the same counts
    assert file_sha256(tmp_path / "train.jsonl") != before
    assert all(e.meta_sha256 == file_sha256(e.path / "dialogue.json") for e in read_manifest(tmp_path / "train.jsonl"))


# --- stopped runs: the manifest and synth.json ----------------------------------------------------
def test_a_cut_synth_json_is_refused_before_any_dialogue_is_rewritten(tmp_path, capsys):
    """(was: a JSONDecodeError traceback after every dialogue.json was rewritten, the manifest left
    as it was)"""
    from kame.cli import main

    make_set(tmp_path)
    for cut in ("", '{"llm": "none", "se'):
        (tmp_path / "synth.json").write_text(cut)
        before = {p: p.read_bytes() for p in tmp_path.rglob("*.json*")}
        capsys.readouterr()
        assert main(["data", "oracle", str(tmp_path), "--llm", "none"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("kame: error: ") and "synth.json: not readable JSON" in err and "remove it" in err, err
        assert {p: p.read_bytes() for p in tmp_path.rglob("*.json*")} == before


def test_synth_json_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from pathlib import Path
    from types import SimpleNamespace

    from kame.train.datacmd import read_record
    from kame.train.reoracle import _record_oracle

    path = tmp_path / "synth.json"
    path.write_text(json.dumps({"llm": "none", "seed": 5}))
    write_text = Path.write_text

    def cut(self, text, *a, **k):  # a write stopped halfway
        write_text(self, text[:5])
        raise KeyboardInterrupt

    args = SimpleNamespace(llm="random", seed=2, tokenizer=None)
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(Path, "write_text", cut)
        _record_oracle(path, read_record(tmp_path, ""), args, SimOracleConfig(), whole=True)
    assert json.loads(path.read_text()) == {"llm": "none", "seed": 5} and [p.name for p in tmp_path.iterdir()] == [path.name]
    _record_oracle(path, read_record(tmp_path, ""), args, SimOracleConfig(), whole=True)
    assert json.loads(path.read_text())["oracle_seed"] == 2


class _Killed(Exception):
    """SIGTERM's default here (the process killed, no manifest written): the test fails, not pytest."""


def test_sigterm_ends_the_run_as_ctrl_c_does_and_the_manifest_says_what_was_written(tmp_path, capsys, monkeypatch):
    """(was: killed at once, the old manifest left over dialogues with new oracles)"""
    import os
    import signal

    from kame.cli import main
    from kame.paths import file_sha256
    from kame.train import reoracle

    def killed(signum, frame):
        raise _Killed

    folders = make_set(tmp_path)
    written = []

    def write_then_sigterm(d):  # SIGTERM after the second dialogue is rewritten
        write_meta(d)
        written.append(d.folder)
        if len(written) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(reoracle, "write_meta", write_then_sigterm)
    previous = signal.signal(signal.SIGTERM, killed)
    try:
        assert main(["data", "oracle", str(tmp_path), "--llm", "none"]) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    io = capsys.readouterr()
    assert "terminated (SIGTERM)" in io.err and "| 2 | 0 |" in io.out, (io.out, io.err)
    entries = read_manifest(tmp_path / "train.jsonl")
    assert [e.meta_sha256 for e in entries] == [file_sha256(f / "dialogue.json") for f in folders]
    assert [f.name for f in written] == ["d0", "d1"]


def test_ctrl_c_says_what_was_written_and_exits_130(tmp_path, capsys, monkeypatch):
    """(review helper-261: a Ctrl-C printed nothing, though the manifest was written)"""
    import os
    import signal

    from kame.cli import main
    from kame.paths import file_sha256
    from kame.train import reoracle

    folders = make_set(tmp_path)
    written = []

    def write_then_ctrl_c(d):  # Ctrl-C once the first dialogue is rewritten
        write_meta(d)
        written.append(d.folder)
        if len(written) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(reoracle, "write_meta", write_then_ctrl_c)
    (tmp_path / "synth.json").write_text(json.dumps({"llm": "openai:x", "cleaning": 1}))
    assert main(["data", "oracle", str(tmp_path), "--llm", "none"]) == 130
    io = capsys.readouterr()
    assert "kame data oracle: interrupted; the manifest has 1 dialogue given a new oracle" in io.err, io
    # the set's record keeps the old cleaner: the other dialogues were cleaned with it (was: the new one)
    assert json.loads((tmp_path / "synth.json").read_text()) == {"llm": "none", "cleaning": 1, "interval_s": 0.5,
                                                                 "delay_s": 0.0, "oracle_seed": 0, "tokenizer": None}
    assert "manifest:" in io.out, io
    entries = read_manifest(tmp_path / "train.jsonl")
    assert [e.meta_sha256 for e in entries] == [file_sha256(f / "dialogue.json") for f in folders]


def test_a_resume_on_dialogues_changed_under_their_manifest_is_refused(tmp_path, capsys, monkeypatch):
    """A `kame data oracle` killed (SIGKILL) before it wrote the manifest again leaves the old one
    over the new oracles: its lines' meta_sha256 say so, and kame train's resume is refused (was:
    it went on training on the mixed set); a new run is refused too (review helper-261: warned, it
    could never be resumed)."""
    from kame.cli import main
    from kame.errors import ConfigError
    from kame.model.loaders import load_frontend
    from kame.train import reoracle
    from kame.train.finetune import TrainConfig, train

    from ._fakes import FakeCodec
    from .test_finetune import FAST, _data, _tiny

    manifest = _data(tmp_path / "data", n=2)
    tcfg = TrainConfig(steps=2, **dict(FAST, save_every=2))
    train(_tiny(), FakeCodec(), default_tokenizer(), manifest, tmp_path / "run", tcfg, echo=lambda s: None)
    monkeypatch.setattr(reoracle, "write_manifest", lambda *a, **k: None)  # killed before it
    assert main(["data", "oracle", str(tmp_path / "data"), "--llm", "none"]) == 0
    monkeypatch.undo()
    ckpt = tmp_path / "run" / "latest"
    with pytest.raises(ConfigError) as e:
        train(load_frontend(ckpt)[0], FakeCodec(), default_tokenizer(), manifest, tmp_path / "run",
              TrainConfig(steps=4, **dict(FAST, save_every=2)), resume=ckpt, echo=lambda s: None)
    said = str(e.value)
    assert "2 of the 2 dialogues" in said and "changed since it was written" in said and "d0" in said, said
    assert "kame data oracle" in said and "new run" in said, said
    with pytest.raises(ConfigError, match=r"^train: 2 of the 2 dialogues .* could never be resumed"):
        train(_tiny(), FakeCodec(), default_tokenizer(), manifest, None, TrainConfig(steps=1, **FAST))
    # its manifest written again: the check passes (and check_resume refuses the resume: another set)
    write_manifest(manifest, [tmp_path / "data" / "d0", tmp_path / "data" / "d1"])
    with pytest.raises(ConfigError, match="continues another run: the manifest"):
        train(load_frontend(ckpt)[0], FakeCodec(), default_tokenizer(), manifest, tmp_path / "run",
              TrainConfig(steps=4, **dict(FAST, save_every=2)), resume=ckpt, echo=lambda s: None)


def test_the_temporaries_a_killed_run_left_where_it_writes_are_removed(tmp_path, capsys):
    """A run killed outright (SIGKILL) leaves .NAME.RANDOM.tmp files: the next run removes those an
    hour old of the manifest and synth.json in its folder and in the dialogues' folders, and says
    so on stderr; a fresh one, a user's look-alikes and other folders are left (was: never)."""
    from kame.cli import main

    from ._stale import check_swept, plant

    folders = make_set(tmp_path)
    stale, kept = plant(tmp_path, "train.jsonl")
    more, keep = plant(folders[3], "dialogue.json")
    mine, _ = plant(tmp_path / "notes", "dialogue.json")  # (no dialogue of the set's: not looked into)
    assert main(["data", "oracle", str(tmp_path), "--llm", "none"]) == 0
    check_swept("kame data oracle", stale + more, kept + keep + mine, capsys.readouterr().err)
