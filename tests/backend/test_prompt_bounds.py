"""A Conversation stays bounded in a session of hours (kame.backend.prompt): old turns are dropped,
one turn's text is capped, and the prompt built from it is the same as from the whole history."""

from kame.backend.prompt import KEEP_TURNS, MAX_LINE_CHARS, Conversation, PromptConfig, build_messages
from kame.backend.types import Transcript, Turn, Word


def _final(text: str, t: float) -> Transcript:
    return Transcript(tuple(Word(w, t + 0.2 * i, t + 0.2 * i + 0.2) for i, w in enumerate(text.split())), True, t)


def _talk(conv: Conversation, full: list[Turn], minutes: float) -> None:
    """A question every 6 s, the agent's reply in pieces; ``full`` gets the unbounded history."""
    t = 0.0
    k = 0
    while t < minutes * 60:
        text = f"question number {k} about paris"
        conv.on_transcript(_final(text, t))
        full.append(Turn("user", text, t, t + 1.0))
        reply = "".join(f" word{k}_{i}" for i in range(20))
        for i in range(20):
            conv.on_agent_text(f" word{k}_{i}", t + 3 + 0.1 * i)
        full.append(Turn("agent", reply, t + 3, t + 5))
        t += 6
        k += 1


def test_old_turns_are_dropped_but_the_prompt_is_unchanged():
    conv, full = Conversation(), []
    _talk(conv, full, 60)  # 1 h: 1200 turns
    assert len(full) == 1200
    assert len(conv.turns) < 2 * KEEP_TURNS  # bounded, not the whole hour
    cfg = PromptConfig()
    whole = Conversation()
    whole.turns = full  # (as the cascade passes its history: no trimming)
    assert build_messages(conv, cfg) == build_messages(whole, cfg)
    assert conv.user_words()[-cfg.knowledge_query_words:] == whole.user_words()[-cfg.knowledge_query_words:]
    assert conv.last_user_word_end() == conv.turns[-2].end  # the newest user turn is kept
    # a pending partial still comes last
    conv.on_transcript(Transcript((Word("and", 9000.0, 9000.2),), False, 9000.2))
    assert build_messages(conv, cfg)[1].content.endswith("\nuser: and")
    assert conv.user_words()[-1] == "and"


def test_lines_keep_max_lines_and_skip_empty_turns():
    conv = Conversation()
    for i in range(10):
        conv.on_transcript(_final(f"u{i}", float(i)))
        conv.on_agent_text(" " if i % 2 else f" a{i}", i + 0.5)  # blank agent turns are no line
    cfg = PromptConfig(max_lines=4)
    assert conv.lines(cfg) == ["user: u7", "user: u8", "agent: a8", "user: u9"]
    assert len(conv.lines(PromptConfig(max_lines=0))) == 15  # (0: all, as before)


def test_an_endless_agent_turn_is_capped_to_its_newest_words():
    """No user final for 30 min while the agent talks: one agent line, never more than the cap."""
    conv = Conversation()
    conv.on_transcript(_final("hello there", 0.0))
    for i in range(30 * 60 * 6):  # ~1000 characters a minute, as measured
        conv.on_agent_text(f" w{i}", 1.0 + i / 6)
    agent = conv.turns[-1]
    assert agent.speaker == "agent" and len(conv.turns) == 2
    assert len(agent.text) <= MAX_LINE_CHARS
    assert agent.text.endswith(f" w{30 * 60 * 6 - 1}")
    words = agent.text.split()
    assert all(w.startswith("w") and w[1:].isdigit() for w in words)  # whole words only, none cut
    assert int(words[0][1:]) + len(words) == 30 * 60 * 6  # a contiguous tail
    prompt = build_messages(conv, PromptConfig())[1].content
    assert len(prompt) < MAX_LINE_CHARS + 100
    assert agent.start == 1.0  # the turn's times are kept


def test_a_huge_user_final_is_capped_too():
    conv = Conversation()
    conv.on_transcript(_final(" ".join(f"x{i}" for i in range(2000)), 0.0))
    assert len(conv.turns[0].text) <= MAX_LINE_CHARS
    assert conv.user_words()[-1] == "x1999"
