"""kame.train.oracle_sim: KAME's simulated oracle (hint levels, prediction points, the simulator's
prompt, the events it makes and that they are a valid dialogue's oracle as the stepper feeds it)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from kame.backend.llm.base import LLM
from kame.errors import BackendError, ConfigError
from kame.model.config import preset
from kame.model.stepper import oracle_ids, oracle_timeline
from kame.train.data import DataError, Dialogue, OracleEvent, Word, validate_dialogue
from kame.train.examples import training_example
from kame.train.oracle_sim import (
    HINT_LEVELS, SimOracleConfig, SimOracleError, clean_reply, hint_level, prediction_points, simulate_oracle,
    simulator_messages,
)

from ..backend.scripted_llm import ScriptedLLM
from ._fakes import FakeCodec

REF = "Paris is the capital of France, and it is also its largest city."
HISTORY = [("user", "Hi there."), ("agent", "Hello! What would you like to know?")]


def turn(spec) -> list[Word]:
    return [Word("user", w, s, e) for w, s, e in spec]


# heard at 1.5 s: 2 words; 2.0 s: 3 ("capital" ends at 2.1); 2.5 s: 5; the end, 2.9 s: 6
TURN = turn([("What", 1.0, 1.2), ("is", 1.25, 1.4), ("the", 1.45, 1.6), ("capital", 1.7, 2.1),
             ("of", 2.15, 2.3), ("France?", 2.35, 2.9)])


class ListLLM(LLM):
    """Replies replies[i] to the i-th call (ScriptedLLM's auto gives every call the same)."""

    name = "list"

    def __init__(self, replies):
        self.replies, self.calls = list(replies), []

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        self.calls.append(messages)
        yield self.replies[len(self.calls) - 1]


def test_hint_level_boundaries():
    assert [row[:2] for row in HINT_LEVELS] == [(0.5, 0), (0.65, 1), (0.8, 2), (0.95, 3), (0.99, 4), (1.0, 5)]
    cases = {0.0: 0, 0.5: 0, 0.5001: 1, 13 / 20: 1, 0.651: 2, 0.8: 2, 0.81: 3, 0.95: 3, 0.951: 4, 0.99: 4,
             0.991: 5, 1.0: 5}
    assert {r: hint_level(r) for r in cases} == cases
    for bad in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="completeness r must be in"):
            hint_level(bad)


def test_prediction_points_of_a_turn():
    cfg = SimOracleConfig()
    assert prediction_points(TURN, cfg) == [(1.5, 2), (2.0, 3), (2.5, 5), (2.9, 6)]  # 1.0 s: none heard yet
    assert prediction_points(TURN, SimOracleConfig(min_words=3)) == [(2.0, 3), (2.5, 5), (2.9, 6)]
    # the turn's end is kept even below min_words (the true reply at the end of a short turn)
    assert prediction_points(TURN, SimOracleConfig(min_words=7)) == [(2.9, 6)]
    assert prediction_points(TURN[:1], cfg) == [(1.2, 1)]
    assert prediction_points([], cfg) == []
    # a pause: the same count at several points, each kept (KAME polls on time, not on words)
    pause = turn([("Well", 0.0, 0.2), ("so", 0.3, 0.4), ("hmm", 1.6, 1.8)])
    assert prediction_points(pause, cfg) == [(0.5, 2), (1.0, 2), (1.5, 2), (1.8, 3)]
    # a word ending exactly at a point is heard there
    assert prediction_points(turn([("a", 0.0, 0.2), ("b", 0.2, 0.5), ("c", 0.5, 0.7)]), cfg) == [(0.5, 2), (0.7, 3)]
    with pytest.raises(ValueError, match="sort the turn's words by start"):
        prediction_points(TURN[::-1], cfg)


def test_config_is_checked():
    with pytest.raises(ConfigError, match=r"SimOracleConfig.interval_s must be > 0 seconds and finite, got 0"):
        SimOracleConfig(interval_s=0)
    with pytest.raises(ConfigError, match=r"min_reply_words must be <= max_reply_words \(30\), got 40"):
        SimOracleConfig(min_reply_words=40)
    with pytest.raises(ConfigError, match="min_words must be an int >= 1"):
        SimOracleConfig(min_words=0)


def test_simulator_messages_show_the_reference_only_with_a_hint():
    cfg = SimOracleConfig()
    heard = ["What", "is", "the", "capital"]
    low = simulator_messages(HISTORY, heard, REF, 0.5, 0, cfg)
    assert [m.role for m in low] == ["system", "user"]
    assert "10 to 30 words" in low[0].content
    text = low[1].content
    assert "User: What is the capital" in text and "50%" in text
    assert "User: Hi there." in text and "Assistant: Hello! What would you like to know?" in text
    assert HINT_LEVELS[0][2] in text
    assert "Paris" not in text and "Hint" not in text  # level 0: no reference at all
    for level in range(1, 5):
        msgs = simulator_messages(HISTORY, heard, REF, 0.9, level, cfg)
        body = msgs[1].content
        assert REF in body and HINT_LEVELS[level][2] in body and "User: What is the capital" in body
        assert all(HINT_LEVELS[other][2] not in body for other in range(6) if other != level)
    first = simulator_messages([], heard, REF, 0.6, 1, cfg)[1].content
    assert "first turn" in first
    with pytest.raises(ValueError, match="history turn 0 must be"):
        simulator_messages([("moshi", "hi")], heard, REF, 0.5, 0, cfg)


def test_clean_reply():
    assert clean_reply('assistant: "Paris is **the** capital."\nuser: thanks', 30) == "Paris is the capital."
    assert clean_reply("Moshi: - one\n- two 😀", 30) == "one two"
    assert clean_reply("**Assistant:** hello there", 30) == "hello there"
    assert clean_reply("'Paris.'", 30) == "Paris." and clean_reply("The students' books", 30) == "The students' books"
    assert clean_reply("one two three four five", 3) == "one two three"
    assert clean_reply("user: hi", 30) == "" and clean_reply("*** \n", 30) == ""


async def test_events_of_a_turn(tok):
    llm = ScriptedLLM(auto=["Paris", " is the capital, I think."])
    cfg = SimOracleConfig()
    events = await simulate_oracle(user_words=TURN, reference=REF, llm=llm, tokenizer=tok, history=HISTORY,
                                   cfg=cfg, first_prediction=5)
    assert [(e.frame, e.event) for e in events] == [(18, "reset"), (18, "append"), (25, "reset"), (25, "append"),
                                                   (31, "reset"), (31, "append"), (36, "reset"), (36, "append")]
    resets, appends = events[0::2], events[1::2]
    assert [(e.prediction, e.hint) for e in resets] == [(5, 0), (6, 0), (7, 3), (8, 5)]
    assert [e.use_hint for e in resets] == [False, False, False, True]  # the true reply as is: never skipped
    assert [e.text for e in appends] == ["Paris is the capital, I think."] * 3 + [REF]  # level 5: the reference
    assert all(e.ids == tok.encode(e.text) and e.prediction is None and e.hint is None for e in appends)
    assert events.next_prediction == 9
    s = events.stats
    assert (s.points, s.llm_calls, s.kept, s.empty, s.past_end, s.superseded) == (4, 3, 4, 0, 0, 0)
    assert s.levels == {0: 2, 3: 1, 5: 1}
    # three LLM calls (none for level 5), with the config's sampling; the reference only at level 3
    assert len(llm.calls) == 3 and all(c.finished for c in llm.calls)
    assert [(c.max_tokens, c.temperature) for c in llm.calls] == [(96, 0.7)] * 3
    shown = [REF in c.messages[1].content for c in llm.calls]
    assert shown == [False, False, True]
    assert "User: What is the capital of\n" in llm.calls[2].messages[1].content + "\n"  # 5 words heard at 2.5 s


async def test_events_make_a_valid_dialogue_and_the_stream_starts_each_prediction_at_its_frame(tok):
    llm = ScriptedLLM(auto=["The capital is Paris."])
    events = await simulate_oracle(user_words=TURN, reference=REF, llm=llm, tokenizer=tok, history=HISTORY)
    T = 60  # 4.8 s
    agent = [Word("agent", w, 3.0 + 0.1 * i, 3.05 + 0.1 * i) for i, w in enumerate(REF.split())]
    d = Dialogue(np.zeros((T * 1920, 2), np.float32), TURN + agent, list(events), tokenizer_sha256=tok.sha256)
    validate_dialogue(d)
    cfg = preset("tiny").replace(text_card=4000)
    codes, oracle = training_example(d, FakeCodec(), tok, cfg)
    assert oracle.tolist() == oracle_timeline(d.timeline_events(), T, **oracle_ids(cfg)).tolist()
    start, pad = cfg.text_card, cfg.existing_text_padding_id
    got = oracle.tolist()
    assert got[:18] == [pad] * 18  # nothing before the first prediction
    frames = [e.frame for e in events[0::2]] + [T]
    for n, app in enumerate(events[1::2]):
        f, nxt = frames[n], frames[n + 1]
        assert got[f] == start  # each prediction starts at its frame: start id, then its tokens
        shown = got[f + 1: nxt]
        assert shown == (app.ids + [pad] * T)[: len(shown)]


async def test_level_5_uses_the_reference_with_no_llm_call(tok):
    llm = ScriptedLLM(auto=["never used"])
    events = await simulate_oracle(user_words=TURN, reference="  Paris.  ", llm=llm, tokenizer=tok,
                                   cfg=SimOracleConfig(min_words=7))
    assert events == [OracleEvent(36, "reset", prediction=0, hint=5, use_hint=True),
                      OracleEvent(36, "append", ids=tok.encode("Paris."), text="Paris.")]
    assert llm.calls == []
    # no LLM at all: the level-5 prediction only, the others counted
    events = await simulate_oracle(user_words=TURN, reference="Paris.", llm=None, tokenizer=tok, first_prediction=4)
    assert [(e.frame, e.prediction, e.hint) for e in events[0::2]] == [(36, 4, 5)]
    assert events.stats.no_llm == 3 and events.stats.empty == 0 and events.next_prediction == 5
    with pytest.raises(ValueError, match="reference must be the agent's true next turn"):
        await simulate_oracle(user_words=TURN, reference=" ", llm=llm, tokenizer=tok)


async def test_the_reply_is_cleaned_and_cut_and_an_empty_one_skipped(tok, caplog):
    long = " ".join(f"w{i}" for i in range(40))
    llm = ScriptedLLM(auto=["Assistant:", ' "Sure, **Paris**', ' it is.\nUser: thanks"'])
    events = await simulate_oracle(user_words=TURN, reference=REF, llm=llm, tokenizer=tok)
    assert events[1].text == "Sure, Paris it is." and events[1].ids == tok.encode("Sure, Paris it is.")
    llm = ScriptedLLM(auto=[long])
    events = await simulate_oracle(user_words=TURN, reference=REF, llm=llm, tokenizer=tok,
                                   cfg=SimOracleConfig(max_reply_words=12))
    assert events[1].text == " ".join(f"w{i}" for i in range(12))
    # empty after cleaning: skipped, warned, counted; the prediction ids stay consecutive
    llm = ScriptedLLM(auto=["user: what?"])
    with caplog.at_level(logging.WARNING, logger="kame.train.oracle_sim"):
        events = await simulate_oracle(user_words=TURN, reference=REF, llm=llm, tokenizer=tok, first_prediction=2)
    assert [(e.frame, e.prediction, e.hint) for e in events[0::2]] == [(36, 2, 5)]
    assert events.stats.empty == 3 and events.stats.kept == 1 and events.next_prediction == 3
    assert "prediction at 2.50 s (hint level 3, 5/6 words heard) is empty after cleaning: skipped" in caplog.text


def _llm_pieces(text):
    """An LLM's pieces of ``text``: each word's space in front, a word of 5 letters or more in two (" gre" "at")."""
    out = []
    for w in text.split(" "):
        out += [" " + w[:3], w[3:]] if len(w) > 4 else [" " + w]
    return [out[0].lstrip()] + out[1:]


@pytest.mark.parametrize("reply", [
    # the cleaning drops 7 of the first 35 raw words (emoji, bullets): 30 words live, was 26 ("... boat tour")
    "Sure! Here are some ideas 😊:\n- Visit the museum 🏛️\n- Walk along the river 🌊\n- Try the local food 🍜\n"
    "- See the cathedral ⛪\n- Take a boat tour 🚤\n- Relax in a park 🌳 and much more to see",
    # the 35th raw word's first piece was the 30th kept word: "... is really gre" (live: "great")
    "Options 😊 😊 😊 😊 😊 " + " ".join(f"w{i}" for i in range(24)) + " London Bridge is really great fun to see",
    # the 30th word's unfinished piece " €1" cleaned as finished, "1 euros", counted past 30: "... costs 1" (live: "12")
    ["Sure"] + [f" w{i}" for i in range(27)] + [" costs", " €1", "2", " per", " person", " today"],
    # the unfinished " https" counted as the 31st word: "... visit" (live: "visit.", the mark after a dropped URL)
    ["Sure"] + [f" w{i}" for i in range(28)] + [" visit", " https", "://", "example", ".com", ".", " Then", " go"],
])
async def test_a_long_reply_is_read_and_cut_as_the_live_oracle_cuts_it(tok, reply):
    """Training's simulated oracle stops reading on the live rule (its streamed SpokenStream done),
    so its text is the live SpokenStream's: no half word, no fewer words, no unfinished last word
    (was: it stopped at the 35th raw word, then at more cleaned words than kept, the last piece
    cleaned as if finished). ``reply``: a text (split as an LLM streams it) or its pieces."""
    from kame.backend.speech_text import SpokenStream

    pieces = reply if isinstance(reply, list) else _llm_pieces(reply)
    live = SpokenStream(30)
    said = ("".join(live.feed(p) for p in pieces) + live.flush()).strip()
    assert len(said.split()) == 30
    llm = ScriptedLLM(auto=pieces)
    events = await simulate_oracle(user_words=TURN, reference=REF, llm=llm, tokenizer=tok)
    assert events[1].text == said
    assert all(c.closed and not c.finished for c in llm.calls)  # reading stopped before the reply's end


async def test_a_labelled_long_reply_is_read_to_its_last_kept_word(tok):
    """A reply led by the training prompt's agent label ("Assistant:", dropped by clean_reply) is read
    until its 30th kept word is whole: the label is not counted as a word ("costs 12", not "costs 1")."""
    pieces = ["Assistant", ":", " Sure"] + [f" w{i}" for i in range(27)] + [" costs", " €1", "2", " per", " person"]
    llm = ScriptedLLM(auto=pieces)
    events = await simulate_oracle(user_words=TURN, reference=REF, llm=llm, tokenizer=tok)
    assert events[1].text == clean_reply("".join(pieces), 30) and events[1].text.endswith(" costs 12")
    assert all(c.closed and not c.finished for c in llm.calls)


async def test_frames_limit_and_delay(tok):
    llm = ScriptedLLM(auto=["Paris, I guess."])
    events = await simulate_oracle(user_words=TURN, reference=REF, llm=llm, tokenizer=tok, frames=31)
    assert [e.frame for e in events] == [18, 18, 25, 25]
    assert len(llm.calls) == 2 and events.stats.past_end == 2  # no LLM call for a point past the end
    events = await simulate_oracle(user_words=TURN, reference=REF, llm=llm, tokenizer=tok,
                                   cfg=SimOracleConfig(delay_s=0.3))
    assert [e.frame for e in events[0::2]] == [22, 28, 35, 40]  # frame_of(t + 0.3)
    assert [e.hint for e in events[0::2]] == [0, 0, 3, 5]  # the levels are the points' own


async def test_points_at_one_frame_keep_the_later(tok):
    """The last poll within one frame of the turn's end: only the turn-end prediction is kept (a
    reset at the same frame replaces the earlier before any of its tokens is fed: the same
    timeline), with no LLM call for the earlier."""
    short = turn([("Where", 0.0, 0.2), ("is", 0.3, 0.4), ("the", 0.6, 0.9), ("tower?", 1.2, 1.51)])
    assert prediction_points(short, SimOracleConfig()) == [(0.5, 2), (1.0, 3), (1.5, 3), (1.51, 4)]
    llm = ScriptedLLM(auto=["The Eiffel Tower is in Paris."])
    events = await simulate_oracle(user_words=short, reference=REF, llm=llm, tokenizer=tok)
    assert [(e.frame, e.hint) for e in events[0::2]] == [(6, 0), (12, 2), (18, 5)]
    assert len(llm.calls) == 2 and events.stats.superseded == 1
    # keeping the earlier one too would feed exactly the same tokens
    earlier = [OracleEvent(18, "reset"), OracleEvent(18, "append", tok.encode("The tower"))]
    both = list(events[:4]) + earlier + list(events[4:])
    ids = dict(start_id=4000, pad_id=3, vocab=4001)
    assert oracle_timeline([e.timeline_event() for e in both], 40, **ids).tolist() == \
        oracle_timeline([e.timeline_event() for e in events], 40, **ids).tolist()


async def test_an_empty_later_point_falls_back_to_the_earlier_at_its_frame(tok):
    words = turn([("Hello", 0.0, 0.21), ("there", 0.5, 1.0)])
    cfg = SimOracleConfig(interval_s=0.05, min_words=1)  # 0.25 s and 0.30 s are both frame 3
    llm = ListLLM(["", "First reply here.", "Second reply."])
    events = await simulate_oracle(user_words=words, reference=REF, llm=llm, tokenizer=tok, cfg=cfg, frames=5)
    assert [(e.frame, e.event, e.text) for e in events] == [
        (3, "reset", None), (3, "append", "First reply here."), (4, "reset", None), (4, "append", "Second reply.")]
    assert [e.prediction for e in events[0::2]] == [0, 1]
    s = events.stats
    assert (s.llm_calls, s.empty, s.superseded, s.kept) == (3, 1, 0, 2)


async def test_llm_errors_name_the_time_and_level(tok):
    llm = ScriptedLLM(auto=[BackendError("HTTP 500 from the server")])
    with pytest.raises(SimOracleError, match=r"prediction at 1.50 s \(hint level 0\) failed: HTTP 500") as err:
        await simulate_oracle(user_words=TURN, reference=REF, llm=llm, tokenizer=tok)
    assert isinstance(err.value, BackendError)  # a caller's `except BackendError` catches it
    llm = ScriptedLLM(auto=[None])  # a piece that is not text: the LLM broke its interface
    with pytest.raises(SimOracleError, match=r"at 2.00 s \(hint level 0\) failed: LLM scripted broke its interface"):
        await simulate_oracle(user_words=TURN, reference=REF, llm=llm, tokenizer=tok,
                              cfg=SimOracleConfig(min_words=3))
    llm = ScriptedLLM()  # never replies
    with pytest.raises(SimOracleError, match=r"at 2.50 s \(hint level 3\): LLM scripted gave no complete reply "
                                             r"within 0.05 s \(SimOracleConfig.timeout_s\)"):
        await simulate_oracle(user_words=TURN, reference=REF, llm=llm, tokenizer=tok,
                              cfg=SimOracleConfig(min_words=5, timeout_s=0.05))
    assert llm.calls[0].closed  # the stream was closed, not left running


@pytest.mark.slow
async def test_with_the_embedded_llm(tok):
    """SmolLM2-135M offline (~20 s to load, one short reply): a real LLM's reply makes a prediction."""
    pytest.importorskip("transformers")
    from kame import registry

    llm = registry.create("llm", "embedded")
    words = turn([("Tell", 0.0, 0.2), ("me", 0.25, 0.4), ("about", 0.45, 0.7), ("Paris", 0.75, 1.1)])
    cfg = SimOracleConfig(min_words=3, temperature=0.0, max_tokens=40)  # one LLM point: 1.0 s, 3/4 heard (level 2)
    events = await simulate_oracle(user_words=words, reference="Paris is the capital of France.", llm=llm,
                                   tokenizer=tok, cfg=cfg)
    assert events.stats.llm_calls == 1
    assert [e.hint for e in events[0::2]][-1] == 5 and events.stats.kept >= 2, events.stats
    first = events[1]
    assert first.text and first.ids == tok.encode(first.text) and len(first.text.split()) <= 30


class SeedLLM(LLM):
    """A seedable LLM (as the embedded one) that replies with the seed it was given."""

    name, seedable = "seeded", True

    def __init__(self):
        self.seeds = []

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None, seed=None):
        self.seeds.append(seed)
        yield f"seed {seed}"


async def test_each_point_of_a_seedable_llm_gets_a_seed_of_its_own_from_rng(tok):
    """kame data synth / oracle --llm embedded gave another oracle every run with the same --seed
    (the child sampled at 0.7 from an unseeded RNG): each point's request is now seeded from the
    rng (the seed, the dialogue), the same ones on a rerun."""
    from kame.train.oracle_sim import simulate_dialogue

    turns = [("user", TURN, "What is the capital of France?"), ("agent", [], REF),
             ("user", TURN, "What is the capital of France?"), ("agent", [], "Berlin.")]

    async def seeds(key, llm=None):
        llm = llm or SeedLLM()
        events = await simulate_dialogue(turns, llm=llm, tokenizer=tok, rng=np.random.default_rng(key))
        return llm.seeds, [e.text for e in events[1::2]]

    first, texts = await seeds([0, 0, 2])
    assert len(first) == 6 and None not in first and len(set(first)) == 6  # 3 LLM points a turn, one seed each
    assert sorted(t for t in texts if t.startswith("seed")) == sorted(f"seed {s}" for s in first)
    assert await seeds([0, 0, 2]) == (first, texts)  # a rerun: the same requests
    assert set((await seeds([0, 1, 2]))[0]).isdisjoint(first)  # another dialogue (or --seed): others
    # an LLM that takes no seed (openai:) is asked without one, as before
    plain = ListLLM(["Paris."] * 6)
    await simulate_dialogue(turns, llm=plain, tokenizer=tok, rng=np.random.default_rng([0, 0, 2]))
    assert len(plain.calls) == 6


@pytest.mark.slow
async def test_the_embedded_llm_samples_the_same_prediction_for_the_same_seed(tok):
    """SmolLM2-135M at the simulator's temperature (0.7): the same rng, the same prediction (was: the
    child's unseeded RNG, another one each run)."""
    pytest.importorskip("transformers")
    from kame import registry

    llm = registry.create("llm", "embedded")
    words = turn([("Tell", 0.0, 0.2), ("me", 0.25, 0.4), ("about", 0.45, 0.7), ("Paris", 0.75, 1.1)])
    cfg = SimOracleConfig(min_words=3, max_tokens=40)  # one LLM point: 1.0 s, 3/4 heard (level 2)

    async def predicted(key):
        events = await simulate_oracle(user_words=words, reference="Paris is the capital of France.", llm=llm,
                                       tokenizer=tok, cfg=cfg, rng=np.random.default_rng(key))
        assert events.stats.llm_calls == 1
        return events[1].text

    first = await predicted([0, 0, 2])
    assert [await predicted([0, 0, 2]) for _ in range(2)] == [first, first]
    assert {await predicted([0, k, 2]) for k in range(1, 4)} != {first}  # (other seeds: not all this one)


# --- randomized guidance (no LLM) -------------------------------------------------------------------
POOL = ["It is Berlin, the capital of Germany.", "Water boils at one hundred degrees.",
        "Mount Everest is the highest mountain on Earth.", "It is Madrid, in the middle of Spain.",
        "Seven.", "The Pacific is the largest ocean, covering about a third of the planet's surface in all.",
        REF, "  It is Berlin,   the capital of Germany. ", "What is the capital of France?"]


async def test_random_guidance_draws_other_replies_before_the_turns_end_and_the_true_one_at_it(tok):
    from kame.train.oracle_sim import RandomReplies

    pool = RandomReplies(POOL, tok)
    assert len(pool) == len(POOL) - 1  # the same text twice (spacing aside) counts once
    events = await simulate_oracle(user_words=TURN, reference=REF, llm=None, tokenizer=tok, random_replies=pool,
                                   rng=np.random.default_rng(3), first_prediction=2)
    resets, appends = events[0::2], events[1::2]
    assert [e.frame for e in resets] == [18, 25, 31, 36]  # the LLM schedule's points
    assert [(e.prediction, e.hint, e.use_hint) for e in resets] == [(2, 0, False), (3, 0, False), (4, 0, False),
                                                                    (5, 5, True)]
    drawn = [a.text for a in appends[:-1]]
    assert appends[-1].text == REF and len(set(drawn)) == 3
    n = len(tok.encode(REF))
    for text in drawn:  # another item's reply, 0.5-2x as long as the true one, never the question
        assert text in pool.texts and text not in (REF, "What is the capital of France?")
        assert n / 2 <= len(tok.encode(text)) <= 2 * n
    assert events.stats.levels == {0: 3, 5: 1} and events.stats.llm_calls == 0
    again = await simulate_oracle(user_words=TURN, reference=REF, llm=None, tokenizer=tok, random_replies=pool,
                                  rng=np.random.default_rng(3), first_prediction=2)
    assert again == events  # seeded
    others = {tuple(a.text for a in (await simulate_oracle(
        user_words=TURN, reference=REF, llm=None, tokenizer=tok, random_replies=pool,
        rng=np.random.default_rng(s)))[1:-2:2]) for s in range(10)}
    assert len(others) > 1
    # written and read back with its flags; training never skips the true reply
    T = 60
    agent = [Word("agent", w, 3.0 + 0.1 * i, 3.05 + 0.1 * i) for i, w in enumerate(REF.split())]
    d = Dialogue(np.zeros((T * 1920, 2), np.float32), TURN + agent, list(events), tokenizer_sha256=tok.sha256)
    validate_dialogue(d)
    from kame.train.batching import protected_events

    assert protected_events(d.oracle) == {6}
    assert [ev.to_json().get("use_hint") for ev in d.oracle] == [False, None, False, None, False, None, True, None]


async def test_random_guidance_needs_enough_replies_of_a_like_length(tok):
    from kame.train.oracle_sim import RandomReplies

    pool = RandomReplies(["Seven.", "Yes.", REF], tok)  # none 0.5-2x as long as REF but REF itself
    with pytest.raises(DataError, match=r"3 prediction points before its end, but only 0 of the pool's 3 replies"):
        await simulate_oracle(user_words=TURN, reference=REF, llm=None, tokenizer=tok, random_replies=pool,
                              rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="random_replies replaces the LLM"):
        await simulate_oracle(user_words=TURN, reference=REF, llm=ScriptedLLM(auto=["x"]), tokenizer=tok,
                              random_replies=pool, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="min_ratio"):
        RandomReplies(["a"], tok, min_ratio=1.5)
    # a turn with no point before its end draws nothing
    one = await simulate_oracle(user_words=turn([("Hello?", 1.0, 1.3)]), reference=REF, llm=None, tokenizer=tok,
                                random_replies=pool, rng=np.random.default_rng(0))
    assert [(e.hint, e.use_hint) for e in one[0::2]] == [(5, True)]


def test_use_hint_is_checked_on_resets_only(tok):
    base = [Word("user", "Hi", 0.1, 0.3)]
    bad_type = Dialogue(np.zeros((1920 * 10, 2), np.float32), base, [OracleEvent(2, "reset", use_hint=1)])
    with pytest.raises(DataError, match="use_hint must be true, false or null"):
        validate_dialogue(bad_type)
    on_append = Dialogue(np.zeros((1920 * 10, 2), np.float32), base,
                         [OracleEvent(2, "reset"), OracleEvent(2, "append", [5], use_hint=True)],
                         tokenizer_sha256=tok.sha256)
    with pytest.raises(DataError, match="an append with use_hint=True"):
        validate_dialogue(on_append)


@pytest.mark.parametrize("command", ["synth", "oracle"])
def test_an_interval_under_a_frame_is_an_argument_error(command, tmp_path, capsys):
    """(was: --interval 1e-6 ran for minutes and took GBs for three items; two predictions on one
    frame keep only the later anyway)"""
    from kame.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["data", command, str(tmp_path / "x"), *(["-o", str(tmp_path / "o")] if command == "synth" else []),
              "--llm", "none", "--interval", "1e-6"])
    assert exit_.value.code == 2 and "argument --interval: must be >= 0.08 (a frame), got 1e-6" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


async def test_a_delay_past_any_end_leaves_the_points_out_not_an_overflow(tok):
    """--delay 1e308: each prediction point is past the dialogue's end, left out and counted (was:
    an OverflowError in every item, "0 dialogues")."""
    events = await simulate_oracle(user_words=TURN, reference=REF, llm=None, tokenizer=tok,
                                   cfg=SimOracleConfig(delay_s=1e308), frames=500)
    assert list(events) == [] and events.stats.past_end == events.stats.points > 0


def test_a_set_cleaned_otherwise_is_told_in_one_line_naming_the_run_that_cleans_it_anew(tmp_path):
    """kame train's warning (kame.train.batching.load_examples): a set whose synth.json records
    another cleaner version, or none (made before it was recorded), was cleaned otherwise than the
    live oracle's text (was: nothing said; docs/data.md told users to re-run kame data oracle)."""
    import json

    from kame.backend.speech_text import CLEANING_VERSION
    from kame.train.oracle_sim import stale_cleaning

    manifest, record = tmp_path / "set" / "train.jsonl", tmp_path / "set" / "synth.json"
    record.parent.mkdir()
    assert stale_cleaning(manifest) is None  # (no record: a set made otherwise, nothing to say)
    settings = {"llm": "openai:my model", "tokenizer": None, "interval_s": 0.5, "delay_s": 0.0, "seed": 3}
    record.write_text(json.dumps(settings))
    note = stale_cleaning(manifest)
    assert "\n" not in note and "synth.json records no cleaning version" in note, note
    # with the set's seed (was: none, so --llm random drew other predictions than the set had)
    assert f"`kame data oracle {manifest} --llm 'openai:my model' --interval 0.5 --delay 0.0 --seed 3`" in note, note
    assert "makes the predictions anew, asking the LLM again" in note, note
    record.write_text(json.dumps({**settings, "oracle_seed": 8}))  # (kame data oracle's, over synth's)
    assert "--delay 0.0 --seed 8`" in stale_cleaning(manifest)
    record.write_text(json.dumps({**settings, "cleaning": CLEANING_VERSION - 1}))
    assert f"records cleaning version {CLEANING_VERSION - 1};" in stale_cleaning(manifest)
    record.write_text(json.dumps({**settings, "cleaning": CLEANING_VERSION}))
    assert stale_cleaning(manifest) is None
    record.write_text("{ cut")  # (kame data oracle refuses it; training is not stopped for it, but told: was nothing)
    note = stale_cleaning(manifest)
    assert note.startswith(f"{record}: not readable JSON") and "remove it" in note and "\n" not in note, note


def test_the_stale_cleaning_command_says_a_plugins_llm_needs_its_plugin(tmp_path, monkeypatch):
    """The set's LLM came from a plugin (its scheme not kame's built-in one): the record names no
    plugin, so the warning says the command needs it (was: the command, run as written, failed
    with "--llm: unknown llm spec 'fix'")."""
    import json

    from kame import registry
    from kame.train.oracle_sim import stale_cleaning

    manifest, record = tmp_path / "set" / "train.jsonl", tmp_path / "set" / "synth.json"
    record.parent.mkdir()
    say = "(with the --plugin that provides LLM 'fix')"
    record.write_text(json.dumps({"llm": "fix", "seed": 1}))  # (the plugin not loaded here: an unknown scheme)
    assert f"--llm fix --seed 1` {say} to clean it anew" in stale_cleaning(manifest)
    for llm in ("embedded", "openai:gpt-4.1", "random", "none"):  # kame's own, and no LLM
        record.write_text(json.dumps({"llm": llm}))
        assert "--plugin" not in stale_cleaning(manifest), llm
    registry.schemes("llm")  # (the table loaded)
    monkeypatch.setitem(registry._ENTRIES["llm"], "fix", registry.Entry("mod:create", None))  # the plugin loaded
    monkeypatch.setitem(registry._ENTRIES["llm"], "embedded", registry.Entry("mod:create", None))  # one replacing
    for llm, scheme in (("fix", "fix"), ("embedded;n=1", "embedded")):
        record.write_text(json.dumps({"llm": llm}))
        assert f"(with the --plugin that provides LLM {scheme!r})" in stale_cleaning(manifest), llm
