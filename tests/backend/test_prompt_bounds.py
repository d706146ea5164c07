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


def _long_talk(turns: int, text: str) -> Conversation:
    conv = Conversation()
    for i in range(turns):
        conv.on_transcript(_final(f"q{i} " + text, 10.0 * i))
        conv.on_agent_text(f" a{i} " + text, 10.0 * i + 5)
    return conv


def test_the_prompt_history_has_a_total_character_budget():
    """40 lines of ~600 characters were a ~24k-character prompt (~6k tokens: the embedded LLM's
    first token ~40 s); now the newest lines within history_chars, kept whole, the oldest dropped."""
    from kame.backend.prompt import HISTORY_CHARS

    conv = _long_talk(30, "what is the capital of france and why is it so big " * 10)
    assert HISTORY_CHARS == PromptConfig().history_chars == 4000
    every = conv.lines(PromptConfig(history_chars=0))
    assert len(every) == 40 and len("\n".join(every)) > 20000  # (0: max_lines only, as before)
    lines = conv.lines(PromptConfig())
    content = build_messages(conv, PromptConfig())[1].content
    assert content == "\n".join(lines) and len(content) <= HISTORY_CHARS
    assert lines == every[-len(lines):]  # the newest lines, whole
    assert len("\n".join(every[-len(lines) - 1:])) > HISTORY_CHARS  # one more would not fit
    assert lines[-1].startswith("agent: a29 ") and len(lines) == 7
    small = conv.lines(PromptConfig(history_chars=1100))
    assert small == every[-2:] and len("\n".join(small)) <= 1100
    # a pending partial is the newest line: it counts first
    conv.on_transcript(Transcript(tuple(Word(f"p{i}", 900.0 + i, 900.5 + i) for i in range(3)), False, 903.0))
    assert conv.lines(PromptConfig(history_chars=1100)) == every[-2:] + ["user: p0 p1 p2"]
    assert conv.lines(PromptConfig(history_chars=1050)) == [every[-1], "user: p0 p1 p2"]


def test_a_newest_line_longer_than_the_budget_keeps_its_label_and_last_words():
    conv = _long_talk(3, " ".join(f"w{i}" for i in range(150)))
    lines = conv.lines(PromptConfig(history_chars=100))
    assert len(lines) == 1 and len(lines[0]) <= 100
    assert lines[0].startswith("agent: w") and lines[0].endswith(" w149")  # from a word start
    # text without spaces (Chinese) is cut at the budget as _tail does: its last characters
    zh = "请问今天天气怎么样，我们下午去公园散步好不好？" * 40
    conv = _long_talk(3, zh)
    lines = conv.lines(PromptConfig(history_chars=300))
    assert len(lines) == 1 and len(lines[0]) == 300 and lines[0] == "agent: " + zh[-293:]
    assert len("\n".join(conv.lines(PromptConfig(history_chars=1000)))) <= 1000


def test_the_cascade_prompt_takes_the_budget():
    from kame.backend.prompt import HISTORY_CHARS
    from kame.cascade.agent import default_prompt_fn

    conv = _long_talk(30, "what is the capital of france and why is it so big " * 10)
    assert len(default_prompt_fn()(conv.turns)[1].content) <= HISTORY_CHARS
    assert len(default_prompt_fn(history_chars=1300)(conv.turns)[1].content) <= 1300
    assert len(default_prompt_fn(history_chars=0)(conv.turns)[1].content) > 20000


def test_the_oracle_prompt_takes_backend_history_chars():
    from types import SimpleNamespace

    from kame.config import load_config
    from kame.runtime.backend import producer_factory

    make = producer_factory(load_config(None, ["backend.history_chars=1234"]), None, object(), object())
    producer = make(SimpleNamespace(producer_metric=None, on_oracle=None, id="s1"), lambda *a: None)
    assert producer.prompt.history_chars == 1234
