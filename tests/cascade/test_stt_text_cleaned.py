"""An STT transcript whose words hold a lone surrogate (the openai STT's json.loads of a server's
"\\ud83d"), a NUL or a terminal escape (its ESC) reaches the LLM cleaned, as LLM pieces are
(kame.backend.stt.base.check_transcript, kame.backend.llm.base.clean_text); was: the raw text went
into the conversation, the embedded LLM's tokenizer failed on it ("TypeError: TextEncodeInput must
be Union[...]") on that turn and on every later one, the line staying in the history."""

from kame.backend.types import Transcript, Word
from kame.runtime.clock import FakeClock

from ..backend.scripted_llm import TokenizerLLM
from .fakes import Driver, FakeTTS
from .test_session import _agent

ODD = ["what", "is\ud83d", "\ud83d", "the\x00", "\x1b[31mcapital\x1b[0m", "\x07", "of\x1cfrance"]
# (the BEL alone and the lone surrogate alone: dropped; of a terminal escape its ESC only is removed,
# "[31m" stays: no real STT sends one; the separator: a space)
CLEAN = "what is\ufffd the [31mcapital[0m of france"


def final(words, t):
    return Transcript(tuple(Word(w, t - 0.3 * (len(words) - i), t - 0.3 * (len(words) - i - 1))
                            for i, w in enumerate(words)), True, t)


async def test_odd_stt_words_reach_the_llm_cleaned_and_the_next_turn_works():
    clock = FakeClock()
    llm, tts = TokenizerLLM(clock), FakeTTS(clock)
    agent, _ = await _agent(clock, llm, tts)
    d = Driver(clock, await agent.open_session())
    d.session.stt.queue.put_nowait(final(ODD, clock.now()))
    await d.step(frames=40)
    d.session.stt.queue.put_nowait(final(["and", "germany"], clock.now()))
    await d.step(frames=40)
    assert [m["text"] for m in d.metas("transcript")] == [CLEAN, "and germany"]
    assert [w["word"] for w in d.metas("transcript")[0]["words"]] == CLEAN.split(" ")[:4] + ["of france"]
    turns = d.metas("agent_turn")
    assert [(t["text"], t["failed"]) for t in turns] == [("Fine.", False), ("Fine.", False)]
    assert len(llm.calls) == 2 and f"user: {CLEAN}\nagent: Fine.\nuser: and germany" in llm.calls[1][-1]
    await d.close()
    await agent.stop()


async def test_a_final_of_nothing_but_control_characters_is_no_turn():
    """Its words all dropped, a lone surrogate alone too (review r5, finding 4: was a turn "\\ufffd"):
    a final without words, answered by nothing (was: a reply to "\\x00 \\x07")."""
    clock = FakeClock()
    llm = TokenizerLLM(clock)
    agent, _ = await _agent(clock, llm, FakeTTS(clock))
    d = Driver(clock, await agent.open_session())
    d.session.stt.queue.put_nowait(final(["\x00", "\ud83d", "\x07\x1b"], clock.now()))
    await d.step(frames=30)
    assert [(m["text"], m["words"]) for m in d.metas("transcript")] == [("", [])]
    assert not d.metas("agent_turn") and not llm.calls
    await d.close()
    await agent.stop()
