"""OracleProducer.on_routed (a final hybrid routing answers by the cascade path) settles only
what that final owed: no retry for its words after a failure (the back-off kept), the front-end's
feed of the cancelled prediction stopped, an earlier final still waiting kept waiting."""

import asyncio

from kame.backend.oracle import OracleProducer
from kame.backend.policy import OraclePolicy
from kame.backend.prompt import build_messages
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import FRAME_S, OracleAppend, OracleReset, Transcript, Word
from kame.errors import BackendError
from kame.runtime.clock import FakeClock

from .scripted_llm import ScriptedLLM


def said(text: str, t: float, final: bool = True) -> Transcript:
    ws = tuple(Word(w, t + 0.3 * i, t + 0.3 * i + 0.25) for i, w in enumerate(text.split()))
    return Transcript(ws, final, ws[-1].end + 0.1)


async def settle(n: int = 200) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def make(**policy):
    clock, events, llm = FakeClock(), [], ScriptedLLM()
    p = OracleProducer(llm, default_tokenizer(), OraclePolicy(**policy), clock=clock, on_event=events.append)
    return p, llm, clock, events


async def test_a_routed_final_after_a_failure_is_not_retried_but_the_back_off_holds():
    """Was: the failure's retry_at stayed set, and the poll after it started a "retry" with no
    new words, predicting over the routed final (a second answer fed to the front-end)."""
    p, llm, clock, _ = make(retry_backoff=1.0, poll_interval=0.5)
    runner = asyncio.create_task(p.run())
    await settle()
    await p.on_transcript(said("what is two", 0.0, final=False))
    await settle()
    llm.calls[0].fail(BackendError("HTTP 500: boom"))
    await settle()
    assert p.stats["failed"] == 1
    p.on_routed(said("what is two plus two", 0.0))
    clock.advance(2.0)  # the back-off is long over: polls come and go
    await settle()
    assert len(llm.calls) == 1 and p.stats["start_retry"] == 0  # the routed reply answers it
    # the next words to the failing LLM still wait for a back-off (of the next failure: longer)
    await p.on_transcript(said("and what about", 5.0, final=False))
    await settle()
    llm.calls[1].fail(BackendError("HTTP 500: boom"))
    await settle()
    assert p._gate.retry_at - clock.now() == 2.0
    p.on_routed(said("and what about nine times nine", 5.0))
    clock.advance(1.0)
    await p.on_transcript(said("tell me about rome", 9.0, final=False))  # inside the back-off
    await settle()
    assert len(llm.calls) == 2 and p.stats["wait_backoff"] >= 1
    clock.advance(1.0)  # back-off over: the new words are predicted
    await settle()
    assert len(llm.calls) == 3 and "rome" in llm.calls[2].messages[1].content
    await p.aclose()
    await asyncio.wait_for(runner, 1)


async def test_a_routed_final_stops_the_feed_of_the_cancelled_prediction():
    """Was: the cancelled prediction's tokens already emitted stayed queued in the front-end's
    OracleFeed and were fed one a frame after the cancel. Now a bare OracleReset of a new id
    supersedes them (pad follows); none when the front-end was fed nothing."""
    p, llm, clock, events = make()
    await p.on_transcript(said("what is two", 0.0, final=False))
    await settle()
    llm.calls[0].send("It is four, because two and two make four. ")
    await settle()
    assert isinstance(events[-1], OracleAppend) and events[-1].prediction_id == 1
    p.on_routed(said("what is two plus two", 0.0))
    await settle()
    assert events[-1] == OracleReset(2, clock.now(), bare=True) and p.prediction_id == 2 and p.stats["blanked"] == 1
    assert llm.calls[0].closed
    n = len(events)
    p.on_routed(said("and nine times nine", 3.0))  # nothing fed since: nothing to blank
    assert len(events) == n and p.prediction_id == 2
    clock.advance(1.0)
    await p.on_transcript(said("tell me about rome", 6.0, final=False))  # new words predict as usual
    assert p.prediction_id == 3
    await p.aclose()


async def test_a_routed_final_keeps_an_earlier_final_waiting_for_its_prediction():
    """Was: on_routed cleared the pending final and moved the basis past its words, so a chat
    final held back (here by the restart cap) was never predicted."""
    p, llm, clock, _ = make(max_restarts=1, window=5.0, poll_interval=0.5)
    runner = asyncio.create_task(p.run())
    await settle()
    await p.on_transcript(said("tell me", 0.0, final=False))
    await settle()
    await p.on_transcript(said("tell me about rome", 0.0))  # the cap holds it back
    assert p.prediction_id == 1 and p.stats["wait_cap"] == 1
    p.on_routed(said("what is two plus two", 2.0))
    clock.advance(5.0)  # the window slides: the waiting final is predicted
    await settle()
    assert p.stats["start_final"] == 1 and len(llm.calls) == 2
    # its prompt ends with the earlier final, not the routed question (was: both, the routed one
    # last: the LLM answered it, and the front-end was fed a second answer to it)
    assert llm.calls[1].messages[1].content.splitlines()[-1] == "user: tell me about rome"
    assert "two plus two" not in llm.calls[1].messages[1].content
    p.on_agent_text(" Four.")  # the routed reply heard (TandemSession.on_routed_reply): the turn is back
    assert build_messages(p.conversation, p.prompt)[1].content.splitlines()[-2:] == [
        "user: what is two plus two", "agent: Four."]
    await p.aclose()
    await asyncio.wait_for(runner, 1)


async def test_a_routed_final_blanks_the_feed_only_while_tokens_may_be_queued():
    """Was: any append ever emitted made the next routed final emit a bare OracleReset, even one
    of a prediction completed long ago (fed to its end): a reset with nothing to stop (counted
    as a prediction, sent to clients). Tokens are fed one a frame: blank only until they are."""
    p, llm, clock, events = make()
    await p.on_transcript(said("hello there", 0.0))
    await settle()
    llm.calls[0].send("Hi! ")
    llm.calls[0].end()
    await settle()
    assert p.stats["completed"] == 1 and isinstance(events[-1], OracleAppend)
    clock.advance(30.0)  # long fed
    n = len(events)
    p.on_routed(said("what is two plus two", 30.0))
    await settle()
    assert len(events) == n and p.stats["blanked"] == 0 and p.prediction_id == 1
    await p.on_transcript(said("and what about", 40.0, final=False))  # a new prediction, tokens queued
    await settle()
    llm.calls[1].send("Nine times nine is eighty one, and that is all. ")
    await settle()
    assert isinstance(events[-1], OracleAppend) and events[-1].prediction_id == 2
    clock.advance(FRAME_S)  # one frame later: most of its tokens are still queued
    p.on_routed(said("and what about nine times nine", 40.0))
    await settle()
    assert events[-1] == OracleReset(3, clock.now(), bare=True) and p.stats["blanked"] == 1
    await p.aclose()


async def test_the_feed_is_blanked_by_the_tokens_frames_counted_from_the_reset():
    """The front-end's feed gives token i of a prediction the reset's frame + 1 + i and skips one
    whose frame has passed (kame.model.stepper._OracleRow): was modelled as a queue (late tokens
    fed from their arrival on), which blanked a feed with nothing left and missed one still fed."""
    p, llm, clock, events = make()
    await p.on_transcript(said("what is two", 0.0, final=False))
    await settle()
    t0 = clock.now()
    llm.calls[0].send("Well, nine")  # ("Well," goes out once the next word begins: an LLM's pieces begin with it)
    await settle()
    clock.advance(2.0)  # a slow LLM: the rest comes late, its frames have passed (skipped, not fed)
    llm.calls[0].send(" times nine is eighty one. ")
    await settle()
    n = sum(len(e.token_ids) for e in events if isinstance(e, OracleAppend))
    assert t0 + (n + 1) * FRAME_S < clock.now()
    p.on_routed(said("what is two plus two", 0.0))
    await settle()
    assert p.stats["blanked"] == 0 and p.prediction_id == 1  # nothing queued: no reset
    await p.on_transcript(said("and tell me", 5.0, final=False))  # a new prediction, all at once
    await settle()
    t1 = clock.now()
    llm.calls[1].send("Rome is the capital of Italy, and it is old. ")
    await settle()
    m = sum(len(e.token_ids) for e in events if isinstance(e, OracleAppend) and e.prediction_id == 2)
    clock.advance(m * FRAME_S + FRAME_S / 2)  # its last token's frame is not over (+1: the start token)
    assert clock.now() < t1 + (m + 1) * FRAME_S
    p.on_routed(said("and tell me seven times seven", 5.0))
    await settle()
    assert events[-1] == OracleReset(3, clock.now(), bare=True) and p.stats["blanked"] == 1
    await p.aclose()


async def test_a_routed_question_whose_reply_was_not_heard_is_back_in_the_prompts():
    """Nothing of the routed reply heard (cut by a later final before its first word): the routed
    turn goes back into the next prediction's prompt (was: left out of every later one); an
    answered one stays as it is."""
    p, llm, clock, _ = make()
    p.on_routed(said("what is two plus two", 0.0))
    p.on_routed_unheard()  # (TandemSession.on_routed_reply with "": cut by the next final)
    await p.on_transcript(said("I need it for my homework", 2.0))
    await settle()
    assert llm.calls[0].messages[1].content.splitlines() == ["user: what is two plus two",
                                                             "user: I need it for my homework"]
    assert p.stats["routed_unheard"] == 1
    p.on_routed(said("and three plus three", 4.0))
    p.on_agent_text(" Six.")  # heard
    p.on_routed_unheard()  # nothing to put back
    assert p.stats["routed_unheard"] == 1
    await p.aclose()


async def test_a_routed_question_whose_reply_failed_or_was_empty_is_owed_a_prediction():
    """The routed reply ended by itself with nothing heard (its LLM failed or answered nothing):
    no later final comes for the question, so the oracle predicts for it (after its back-off)."""
    p, llm, clock, _ = make(retry_backoff=1.0, poll_interval=0.5)
    runner = asyncio.create_task(p.run())
    await settle()
    p.on_routed(said("what is two plus two", 0.0))
    p.on_routed_unheard(answer=True)
    await settle()
    assert p.stats["start_final"] == 1 and len(llm.calls) == 1
    assert llm.calls[0].messages[1].content.splitlines()[-1] == "user: what is two plus two"
    llm.calls[0].fail(BackendError("HTTP 500: boom"))  # the LLM is failing: the back-off holds
    await settle()
    p.on_routed(said("and three plus three", 3.0))
    p.on_routed_unheard(answer=True)
    await settle()
    assert len(llm.calls) == 1 and p.stats["wait_backoff"] >= 1
    clock.advance(1.0)
    await settle()
    assert len(llm.calls) == 2 and "three plus three" in llm.calls[1].messages[1].content
    await p.aclose()
    await asyncio.wait_for(runner, 1)


def test_the_knowledge_query_leaves_out_a_routed_turn_not_answered_yet():
    """The notes are looked up with the user words the prompt shows (was: user_words(), with a
    routed question's words the prompt leaves out: notes for a question it does not ask)."""
    from kame.backend.prompt import Conversation, PromptConfig

    class KB:
        queries = []

        def search(self, query, k):
            self.queries.append(query)
            return []

    conv, kb = Conversation(), KB()
    conv.on_transcript(said("tell me about rome", 0.0))
    conv.on_transcript(said("what is two plus two", 2.0), routed=True)
    conv.on_transcript(said("and its history", 4.0, final=False))
    build_messages(conv, PromptConfig(), knowledge=kb)
    assert kb.queries == ["tell me about rome and its history"]
    conv.on_agent_text(" Four.", 3.0)  # answered: its words count again
    build_messages(conv, PromptConfig(knowledge_query_words=5), knowledge=kb)
    assert kb.queries[-1] == "plus two and its history"
