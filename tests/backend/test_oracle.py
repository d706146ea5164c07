"""Oracle producer on a FakeClock with scripted transcripts and a scripted LLM."""

import asyncio
import logging
import random

import pytest

from kame.backend.knowledge import KnowledgeBase
from kame.backend.oracle import OracleProducer
from kame.backend.policy import OraclePolicy
from kame.backend.prompt import PromptConfig
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import OracleAppend, OracleReset, Transcript, Word
from kame.errors import BackendError
from kame.runtime.clock import FakeClock
from kame.runtime.metrics import MetricsLog
from kame.train.data import frame_of

from .scripted_llm import ScriptedLLM

SENT = "what is the capital city of france and how many people live there".split()


def tr(n, final=False, t=None, words=SENT):
    ws = tuple(Word(w, 0.3 * i, 0.3 * i + 0.25) for i, w in enumerate(words[:n]))
    return Transcript(ws, final, ws[-1].end + 0.1 if t is None and ws else (t or 0.0))


async def settle(n=200):
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.fixture
def tok():
    return default_tokenizer()


def make(tok, llm=None, **policy):
    clock = FakeClock()
    log = MetricsLog()
    events = []
    llm = llm or ScriptedLLM()
    p = OracleProducer(llm, tok, OraclePolicy(**policy), clock=clock, metrics=log, on_event=events.append, session="s")
    return p, llm, clock, events, log


async def test_restart_after_n_new_words(tok):
    p, llm, clock, _, _ = make(tok)
    await p.on_transcript(tr(1))
    assert p.prediction_id == 0  # 1 word < 2
    await p.on_transcript(tr(2))
    assert p.prediction_id == 1 and p.stats["start_words"] == 1
    await settle()
    clock.advance(1.0)
    await p.on_transcript(tr(3))
    assert p.prediction_id == 1  # 1 new word
    await p.on_transcript(tr(4))
    assert p.prediction_id == 2
    await settle()
    assert llm.calls[0].closed and not llm.calls[1].closed  # the stale stream was cancelled
    assert p.stats["cancelled"] == 1
    # a revised partial counts its changed words as new
    clock.advance(1.0)
    revised = SENT[:2] + ["kapitol", "sea"]
    await p.on_transcript(tr(4, words=revised))
    assert p.prediction_id == 3
    await p.aclose()


async def test_min_interval_defers_to_the_poll(tok):
    p, llm, clock, _, _ = make(tok, min_interval=0.5, poll_interval=0.5)
    runner = asyncio.create_task(p.run())
    await settle()
    await p.on_transcript(tr(2))
    assert p.prediction_id == 1
    clock.advance(0.2)
    await p.on_transcript(tr(4))
    assert p.prediction_id == 1 and p.stats["wait_interval"] == 1
    clock.advance(0.3)  # t = 0.5: the poll applies the deferred restart
    await settle()
    assert p.prediction_id == 2
    await p.aclose()
    await asyncio.wait_for(runner, 1)


async def test_final_restarts_at_once_unless_already_predicted(tok):
    p, llm, clock, _, _ = make(tok, min_interval=0.5)
    await p.on_transcript(tr(2))
    clock.advance(0.1)
    await p.on_transcript(tr(3, final=True))  # 1 new word, inside min_interval: still restarts
    assert p.prediction_id == 2 and p.stats["start_final"] == 1
    # next utterance: partial predicted, then the identical final -> no restart
    clock.advance(1.0)
    nxt = SENT[:3] + ["tell", "me", "more"]
    await p.on_transcript(Transcript(tuple(Word(w, 5 + i, 5.2 + i) for i, w in enumerate(nxt[3:])), False, 8.0))
    assert p.prediction_id == 3
    clock.advance(1.0)
    await p.on_transcript(Transcript(tuple(Word(w, 5 + i, 5.2 + i) for i, w in enumerate(nxt[3:])), True, 9.0))
    assert p.prediction_id == 3
    await p.aclose()


async def test_cap_per_window(tok):
    p, llm, clock, _, _ = make(tok, min_interval=0.0, max_restarts=5, window=2.0, poll_interval=0.5)
    runner = asyncio.create_task(p.run())
    await settle()
    for k in range(2, 16, 2):  # 7 triggers, 0.1 s apart
        await p.on_transcript(tr(k))
        clock.advance(0.1)
        await settle(3)
    assert p.prediction_id == 5 and p.stats["wait_cap"] >= 2
    clock.advance(2.0)  # the window slides: the poll starts the deferred one
    await settle()
    assert p.prediction_id == 6
    assert sum(c.closed for c in llm.calls) == 5  # every stale stream was closed
    await p.aclose()
    await asyncio.wait_for(runner, 1)


async def test_newest_wins_and_ids_match_whole_text(tok):
    p, llm, clock, events, log = make(tok, min_interval=0.0)
    await p.on_transcript(tr(2))
    await settle()
    c1 = llm.calls[0]
    c1.send("Paris is ", "lovely ")
    await settle()
    assert isinstance(events[0], OracleReset) and events[0].prediction_id == 1
    await p.on_transcript(tr(4))
    await settle()
    c1.send("stale ", "words ")  # the old stream is closed: nothing of it may appear
    c2 = llm.calls[1]
    text = "The capital of France is Paris, with about two million people."
    rng = random.Random(0)
    cuts = sorted(rng.sample(range(1, len(text)), 12))
    for a, b in zip([0] + cuts, cuts + [len(text)]):
        c2.send(text[a:b])
        await settle(2)
    c2.end()
    await settle()
    assert c1.closed and c2.finished
    new = [e for e in events if e.prediction_id == 2]
    assert isinstance(new[0], OracleReset) and all(isinstance(e, OracleAppend) for e in new[1:])
    ids = [i for e in new[1:] for i in e.token_ids]
    assert ids == tok.encode(text)
    assert "".join(e.text for e in new[1:]).strip() == text
    assert not any("stale" in getattr(e, "text", "") for e in events)
    assert p.stats["completed"] == 1


async def test_metrics_on_the_fake_clock(tok):
    p, llm, clock, events, log = make(tok)
    clock.set(1.0)
    await p.on_transcript(tr(3))  # last word ends at 0.85
    await settle()
    clock.set(1.2)
    llm.calls[0].send("")  # an empty piece (a keep-alive) is not the first token (as in the cascade)
    await settle()
    clock.set(1.4)
    llm.calls[0].send("Sure, the")  # ("Sure," goes out once the next word begins: an LLM's pieces begin with it)
    await settle()
    clock.set(1.5)
    llm.calls[0].send(" answer is", " Paris.")
    llm.calls[0].end()
    await settle()
    assert log.values("llm_ttft") == [pytest.approx(0.4)]
    assert log.values("oracle_lag") == [pytest.approx(1.4 - 0.85)]
    assert log.values("oracle_restart") == [1.0]
    assert log.events[0].labels["reason"] == "words" and log.events[0].session == "s"
    assert len(log.values("llm_tokens_per_s")) == 1


def fed(events, frames=40):
    """The oracle tokens the stepper's feed gives for producer ``events`` (one frame = FRAME_S on
    the clock; an event at t applies before step frame_of(t), as training places them)."""
    from kame.model.stepper import oracle_timeline

    evs = [(frame_of(e.t), "reset") if isinstance(e, OracleReset) else (frame_of(e.t), "append", e.token_ids)
           for e in events]
    return oracle_timeline(evs, frames, start_id=9999, pad_id=3, vocab=10000).tolist()


async def test_reset_at_restart_option(tok):
    """reset_on_first_token=False: the old prediction is cut at the restart (a bare reset: its start
    id, then pad; kame data synth's training sets never hold one, sets recorded from kame run do), and the new one's reset goes with its first tokens, as by default, so an LLM that took
    1 s to its first token is fed from its start (was: the reset at the restart, and its first
    12 tokens' frames passed while the LLM thought: skipped)."""
    p, llm, clock, events, _ = make(tok, reset_on_first_token=False)
    await p.on_transcript(tr(2))
    await settle()
    assert events == [OracleReset(1, 0.0, bare=True)] and p.stats["cut"] == 1
    clock.advance(1.0)
    text = "Paris is the capital of France and it is famous for the Eiffel Tower."
    llm.calls[0].send(text)
    llm.calls[0].end()
    await settle()
    assert events[1] == OracleReset(1, 1.0)
    ids = tok.encode(text)
    got, f = fed(events), frame_of(1.0)
    assert got[:f] == [9999] + [3] * (f - 1)  # (the bare reset's start id, then pad while the LLM thinks)
    assert got[f:f + 1 + len(ids)] == [9999] + ids  # every token fed, from the first


async def test_live_reply_is_cut_at_max_words_as_training_cuts_it(tok):
    """A 45-word reply is fed as its first max_words (30) words, as training's clean_reply cuts
    it: live ids == training ids, and the LLM's stream is closed there (was: all 45 live)."""
    from kame.train.oracle_sim import clean_reply

    clock, events, llm = FakeClock(), [], ScriptedLLM()
    p = OracleProducer(llm, tok, OraclePolicy(), prompt=PromptConfig(max_words=30), clock=clock,
                       on_event=events.append, session="s")
    await p.on_transcript(tr(2))
    await settle()
    text = " ".join(f"word{i % 7} yes" if i % 3 else "café, naïve" for i in range(22)) + "."
    rng = random.Random(1)
    cuts = sorted(rng.sample(range(1, len(text)), 25))
    for a, b in zip([0] + cuts, cuts + [len(text)]):
        llm.calls[0].send(text[a:b])
    llm.calls[0].end()
    await settle()
    live = [i for e in events if isinstance(e, OracleAppend) for i in e.token_ids]
    assert len(text.split()) > 40
    assert live == tok.encode(clean_reply(text, 30)) and len(clean_reply(text, 30).split()) == 30
    assert p.stats["reply_capped"] == 1 and llm.calls[0].closed


async def test_llm_error_then_recovery(tok):
    p, llm, clock, events, _ = make(tok, retry_backoff=1.0, poll_interval=0.5)
    runner = asyncio.create_task(p.run())
    await settle()
    await p.on_transcript(tr(2))
    await settle()
    llm.calls[0].fail(BackendError("HTTP 500: boom"))
    await settle()
    assert p.stats["failed"] == 1 and not p.busy
    clock.advance(0.5)
    await p.on_transcript(tr(5))  # during back-off: no restart
    await settle()
    assert len(llm.calls) == 1 and p.stats["wait_backoff"] >= 1
    clock.advance(0.5)  # back-off over: the poll retries with the newest conversation
    await settle()
    assert len(llm.calls) == 2 and p.stats["start_retry"] == 1
    assert llm.calls[1].messages[1].content == "user: what is the capital city"  # the newest words
    llm.calls[1].send("Paris. ")
    llm.calls[1].end()
    await settle()
    assert any(isinstance(e, OracleAppend) and e.prediction_id == 2 for e in events)
    await p.aclose()
    await asyncio.wait_for(runner, 1)


async def test_stall_times_out_on_the_session_clock(tok):
    p, llm, clock, events, _ = make(tok, first_token_timeout=3.0, chunk_timeout=1.0, retry_backoff=0.5)
    await p.on_transcript(tr(2))
    await settle()
    clock.advance(2.9)
    await settle()
    assert p.busy and p.stats["failed"] == 0
    clock.advance(0.2)  # no first piece within 3 s
    await settle()
    assert p.stats["failed"] == 1 and llm.calls[0].closed
    # retry, then a stall between chunks
    clock.advance(1.0)
    p._decide()
    await settle()
    llm.calls[1].send("Paris ")
    await settle()
    clock.advance(1.5)
    await settle()
    assert p.stats["failed"] == 2 and llm.calls[1].closed
    await p.aclose()


async def test_a_failed_prediction_is_logged_with_its_session(tok, caplog):
    """The line names the session: with several, "oracle prediction 1 failed" does not say whose
    (was: no session in it)."""
    p, llm, clock, _, _ = make(tok)
    with caplog.at_level(logging.WARNING, logger="kame.backend.oracle"):
        await p.on_transcript(tr(2))
        await settle()
        llm.calls[0].fail(BackendError("HTTP 500: boom"))
        await settle()
    assert [r.getMessage() for r in caplog.records if r.name == "kame.backend.oracle"] == [
        "session s: oracle prediction 1 failed (BackendError: HTTP 500: boom); retry in 1.00 s"]
    await p.aclose()


@pytest.mark.parametrize("debug", [False, True])
async def test_an_llm_s_own_bug_is_logged_naming_it_and_where_it_was_raised(tok, caplog, debug):
    """An exception that is not kame's (the LLM's bug: a plugin's KeyError) names the LLM and its
    innermost frame, and carries its traceback when the log shows DEBUG (`kame -v`); was only
    "(KeyError: 'choices')", no LLM, no place, no traceback. A BackendError stays one line."""
    from .scripted_llm import __file__ as where

    line = open(where).read().splitlines().index("                    raise item") + 1
    p, llm, clock, _, _ = make(tok, retry_backoff=1.0, poll_interval=0.5)
    runner = asyncio.create_task(p.run())  # (its poll retries)
    bug = KeyError("choices")
    with caplog.at_level(logging.DEBUG if debug else logging.WARNING, logger="kame.backend.oracle"):
        await p.on_transcript(tr(2))
        await settle()
        llm.calls[0].fail(bug)
        await settle()
        for _ in range(2):
            clock.advance(0.5)
            await settle()
        llm.calls[1].fail(BackendError("HTTP 500: boom"))
        await settle()
    said = [r for r in caplog.records if r.name == "kame.backend.oracle" and r.levelno == logging.WARNING]
    assert [r.getMessage() for r in said] == [
        f"session s: oracle prediction 1 failed (LLM scripted: KeyError: 'choices' (at scripted_llm.py:{line})); "
        "retry in 1.00 s",
        "session s: oracle prediction 2 failed (BackendError: HTTP 500: boom); retry in 2.00 s"]
    assert [r.exc_info and r.exc_info[1] for r in said] == [bug if debug else None, None]
    await p.aclose()
    await asyncio.wait_for(runner, 1)


async def test_exceptions_never_escape(tok):
    class Boom(ScriptedLLM):
        def stream_chat(self, messages, **kw):
            raise RuntimeError("bad llm")

    def bad_consumer(ev):
        raise ValueError("consumer bug")

    p = OracleProducer(Boom(), tok, clock=FakeClock(), on_event=bad_consumer)
    await p.on_transcript(tr(2))
    await settle()
    assert p.stats["failed"] == 1
    p2, llm, clock, _, _ = make(tok)
    p2.on_event = bad_consumer
    await p2.on_transcript(tr(2))
    await settle()
    llm.calls[0].send("Hello there. ")
    llm.calls[0].end()
    await settle()
    assert p2.stats["completed"] == 1


async def test_events_queue_when_no_callback(tok):
    p = OracleProducer(ScriptedLLM(auto=["Hi ", "there."]), tok, clock=FakeClock())
    await p.on_transcript(tr(2))
    await settle()
    got = [p.events.get_nowait() for _ in range(p.events.qsize())]
    assert isinstance(got[0], OracleReset)
    assert [i for e in got[1:] for i in e.token_ids] == tok.encode("Hi there.")


async def test_prompt_lines_agent_text_and_knowledge(tok, tmp_path):
    (tmp_path / "museum.md").write_text("The city museum opens at nine in the morning and closes at five.")
    (tmp_path / "zoo.txt").write_text("The zoo has three elephants and a very old tortoise.")
    kb = KnowledgeBase.from_folder(tmp_path)
    llm = ScriptedLLM()
    clock = FakeClock()
    p = OracleProducer(llm, tok, OraclePolicy(), prompt=PromptConfig(persona="You are Kame."),
                       knowledge=kb, clock=clock, on_event=lambda e: None)
    await p.on_transcript(Transcript((Word("hello", 0, 0.3),), True, 0.5))
    p.on_agent_text("\u2581Hi")
    p.on_agent_text(" there!")
    clock.advance(1.0)
    words = "when does the museum open".split()
    await p.on_transcript(Transcript(tuple(Word(w, 1 + i, 1.2 + i) for i, w in enumerate(words)), False, 6))
    await settle()
    system, user = llm.calls[-1].messages
    assert "at most 30 words" in system.content and "You are Kame." in system.content
    assert "museum opens at nine" in system.content and "elephants" not in system.content
    assert user.content.splitlines() == ["user: hello", "agent: Hi there!", "user: when does the museum open"]
    await p.aclose()


async def test_prediction_ends_where_the_llm_writes_the_next_user_line(tok):
    p, llm, clock, events, log = make(tok)
    await p.on_transcript(tr(5))
    await settle()
    llm.calls[0].send("Paris is ", "the capital.", "\nus", "er: th", "anks")  # never ended by the LLM
    await settle()
    ids = [i for e in events if isinstance(e, OracleAppend) for i in e.token_ids]
    assert ids == tok.encode("Paris is the capital.")
    assert llm.calls[0].closed and llm.calls[0].yielded[-1] == "er: th"  # closed, not read on
    assert p.stats["reply_ended"] == 1 and p.stats["completed"] == 1 and not p.busy
    await p.aclose()


async def test_custom_user_label_ends_the_prediction_and_mid_line_labels_do_not(tok):
    events = []
    llm = ScriptedLLM(auto=["Ask the user: a per", "son. Caller too.\nCal", "ler: ok"])
    p = OracleProducer(llm, tok, OraclePolicy(), prompt=PromptConfig(user_label="Caller"), clock=FakeClock(),
                       on_event=events.append)
    await p.on_transcript(tr(5))
    await settle()
    assert p.last_messages[1].content.startswith("Caller: ")
    ids = [i for e in events if isinstance(e, OracleAppend) for i in e.token_ids]
    assert ids == tok.encode("Ask the user: a person. Caller too.") and p.stats["reply_ended"] == 1
    await p.aclose()


async def test_a_stall_is_reported_as_the_llm_failing_and_backs_off_more(tok):
    """The oracle's own timers end a stalled stream before the adapter's do, so the health
    watcher never saw an error: a hung LLM server was invisible in a tandem session (no "llm
    down", no ErrorEvent). Now the producer tells the watcher. And a stream that breaks after
    its first piece no longer resets the back-off (was: retried every retry_backoff s forever)."""
    from kame.runtime.backend import WatchedLLM

    statuses = []
    inner = ScriptedLLM()
    inner.url = "http://127.0.0.1:9/v1/chat/completions"
    p, llm, clock, events, _ = make(tok, WatchedLLM(inner, lambda ok, err: statuses.append((ok, err))),
                                    first_token_timeout=3.0, chunk_timeout=1.0, retry_backoff=0.5)
    await p.on_transcript(tr(2))
    await settle()
    clock.advance(3.1)
    await settle()
    assert statuses == [(False, "LLM http://127.0.0.1:9/v1/chat/completions stalled: nothing for 3.00 s")]
    retry_1 = p._gate.retry_at - clock.now()
    clock.advance(retry_1 + 0.01)
    p._decide()
    await settle()
    inner.calls[1].send("Paris ")  # a first piece, then the stream stalls between chunks
    await settle()
    assert statuses[-1] == (True, None)
    clock.advance(1.1)
    await settle()
    assert statuses[-1][0] is False and p.stats["failed"] == 2
    assert p._gate.retry_at - clock.now() > retry_1  # the back-off grew
    await p.aclose()


async def test_a_rate_limited_llm_is_retried_after_the_wait_it_asked_for(tok):
    """HTTP 429 with Retry-After: 7 (was: shown in the message, retried after the 1 s back-off)."""
    p, llm, clock, events, _ = make(tok, retry_backoff=1.0, poll_interval=0.5)
    await p.on_transcript(tr(2))
    await settle()
    exc = BackendError("LLM http://x/v1/chat/completions: HTTP 429: slow down (rate limited; retry after 7 s)")
    exc.retry_after = 7.0
    llm.calls[0].fail(exc)
    await settle()
    assert p._gate.retry_at - clock.now() == pytest.approx(7.0)
    await p.aclose()


@pytest.mark.parametrize("bad, said", [(None, "yielded None"), (7, "yielded int 7"), ({"t": 1}, "yielded dict {'t': 1}")])
async def test_a_piece_that_is_not_text_fails_the_prediction(tok, bad, said):
    """An LLM that yields something else than str broke its interface: the prediction fails (was:
    None "completed" it silently, an int raised a TypeError from the producer's own code), with
    a message that says what it yielded; a health watcher hears it as the LLM failing, with no
    "up" for the bad piece."""
    from kame.runtime.backend import WatchedLLM

    statuses = []
    inner = ScriptedLLM()
    p, _, clock, events, _ = make(tok, WatchedLLM(inner, lambda ok, err: statuses.append((ok, err))))
    await p.on_transcript(tr(2))
    await settle()
    inner.calls[0].send(bad, "Paris.")
    await settle()
    assert p.stats["failed"] == 1 and p.stats["completed"] == 0 and events == []
    assert statuses == [(False, f"LLM scripted broke its interface: {said}, expected str (a text piece)")]
    # the same without a watcher: the producer's own check
    bare = ScriptedLLM(auto=["The ", bad])
    p2, _, _, _, _ = make(tok, bare)
    await p2.on_transcript(tr(2))
    await settle()
    assert p2.stats["failed"] == 1 and p2.stats["completed"] == 0
    await p.aclose()
    await p2.aclose()


async def test_word_restarts_wait_for_the_running_prediction_s_first_piece(tok):
    """An LLM slower to its first token (1 s) than the user is to two new words (0.6 s):
    without the wait (the default) every prediction is cancelled before it says anything (no
    oracle until the user stops); with it, once one was cancelled unheard, a restart waits
    for the running one's first piece, then the poll applies it. A final does not wait."""
    for wait in (False, True):
        p, llm, clock, events, _ = make(tok, wait_first_token=wait, min_interval=0.5, poll_interval=0.5,
                                        max_restarts=100)
        runner = asyncio.create_task(p.run())
        await settle()
        started: dict[int, float] = {}  # call index -> clock time it started
        for n in range(2, 21, 2):  # a 6 s monologue
            await p.on_transcript(tr(n, words=SENT + SENT))
            for _ in range(6):  # 0.6 s in 0.1 s steps; each call answers 1 s after it started
                await settle()
                for i, c in enumerate(llm.calls):
                    started.setdefault(i, clock.now())
                    if not c.closed and not c.yielded and clock.now() - started[i] >= 1.0 - 1e-9:
                        c.send("The capital")
                await settle()
                clock.advance(0.1)
        said = {e.prediction_id for e in events if isinstance(e, OracleAppend)}
        if wait:  # every other prediction at least is heard
            assert len(said) >= 3 and p.stats["wait_first_token"] > 0
            assert p.stats["cancelled_unheard"] <= len(said) + 1
        else:  # each cancelled before its first piece
            assert not said and p.stats["cancelled_unheard"] == p.stats["cancelled"] == len(llm.calls) - 1
        before = p.prediction_id
        await p.on_transcript(tr(21, final=True, words=SENT + SENT))  # a final starts at once, first piece or not
        assert p.prediction_id == before + 1 and p.stats["start_final"] == 1
        await p.aclose()
        await runner


async def test_predictions_that_speak_are_restarted_as_sakana_kame_does(tok):
    """With wait_first_token, an LLM whose predictions speak before the next
    restart, and a first prediction still silent, are restarted on new words at once."""
    p, llm, clock, events, _ = make(tok, wait_first_token=True, min_interval=0.5, max_restarts=100)
    await p.on_transcript(tr(2))
    clock.advance(0.6)
    await p.on_transcript(tr(4))  # the first prediction is silent, but none was cancelled unheard before
    assert p.prediction_id == 2 and p.stats["cancelled_unheard"] == 1
    await settle()
    for n in (6, 8, 10):
        llm.calls[-1].send("The")  # the running prediction speaks
        await settle()
        clock.advance(0.6)
        await p.on_transcript(tr(n))
        await settle()
    assert p.prediction_id == 5 and p.stats["wait_first_token"] == 0 and p.stats["cancelled_unheard"] == 1
    await p.aclose()


async def test_old_turns_dropped_from_the_conversation_are_no_new_words(tok):
    """When the conversation drops its oldest turns (sessions of hours), the words it dropped are
    not taken for new ones (was: every kept word counted as new, an extra prediction per drop)."""
    p, llm, clock, _, _ = make(tok)
    p.conversation.keep_turns = 2  # (100 in use)

    def final(words, t):
        return Transcript(tuple(Word(w, t + i, t + i + 0.5) for i, w in enumerate(words)), True, t + len(words))

    await p.on_transcript(final(["what", "is"], 0.0))
    p.on_agent_text(" it is", 3.0)
    clock.advance(5.0)
    await p.on_transcript(final(["tell", "more"], 5.0))
    started = p.prediction_id
    p.on_agent_text(" sure", 8.0)  # the fourth turn: the first two are dropped
    assert p.conversation.dropped_user_words == 2
    clock.advance(5.0)
    await p.on_transcript(Transcript((Word("please", 10.0, 10.5),), False, 11.0))  # one new word: no restart
    assert p.prediction_id == started
    await p.on_transcript(Transcript((Word("please", 10.0, 10.5), Word("now", 11.0, 11.5)), False, 12.0))
    assert p.prediction_id == started + 1  # two: a restart, as usual
    await p.aclose()
