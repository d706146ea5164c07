"""ReplyGuard (kame.backend.prompt): where a streamed reply ends because the LLM goes on writing
the conversation's next line, for every way the stream may be chunked."""

import pytest

from kame.backend.prompt import PromptConfig, ReplyGuard
from kame.errors import ConfigError

REPLY = "Paris is the capital.\nuser: thanks"


def run(pieces, cfg=None):
    """(kept text, ended, dropped) after feeding all ``pieces`` and flushing."""
    g = ReplyGuard(cfg)
    kept = "".join(g.feed(p) for p in pieces)
    return kept + g.flush(), g.ended, g.dropped


@pytest.mark.parametrize("cut", range(1, len(REPLY)))
def test_the_user_line_is_cut_wherever_the_chunks_split_it(cut):
    assert run([REPLY[:cut], REPLY[cut:]]) == ("Paris is the capital.", True, "\nuser: thanks")


def test_one_character_at_a_time_and_the_dropped_tail():
    g = ReplyGuard()
    kept = [g.feed(ch) for ch in "Paris is the capital.\nus"]
    assert "".join(kept) == "Paris is the capital." and kept[-3:] == ["", "", ""]  # "\nus" is held
    assert g.feed("er: th") == "" and g.ended and g.dropped == "\nuser: th"
    assert g.feed("anks") == "" and g.dropped == "\nuser: thanks" and g.flush() == ""


def test_labels_in_any_case_with_spaces_and_blank_lines():
    assert run(["It is big.\n\n  User :", " and?"])[:2] == ("It is big.", True)
    assert run(["user: hi there"]) == ("", True, "user: hi there")  # the reply is the user's line


def test_agent_label_is_dropped_at_the_start_and_ends_the_reply_on_a_new_line():
    assert run(["  agent", ":", " ", "Paris.\nOk.\n", "Agent: more"]) == ("Paris.\nOk.", True, "\nAgent: more")


def test_a_label_inside_a_line_or_a_longer_word_is_text():
    text = "The user: a person. Ask the agent: fine.\nusers agree.\nagents: too.\nuser"
    assert run([text[:23], text[23:47], text[47:]]) == (text, False, "")


def test_custom_labels():
    cfg = PromptConfig(user_label="Caller", agent_label="moshi")
    assert run(["moshi: Hello.\ncall", "er: hi"], cfg) == ("Hello.", True, "\ncaller: hi")
    assert run(["Hello.\nuser: hi"], cfg) == ("Hello.\nuser: hi", False, "")  # not this prompt's label


def test_empty_label_is_a_config_error():
    with pytest.raises(ConfigError, match="user_label must not be empty"):
        ReplyGuard(PromptConfig(user_label=" "))


@pytest.mark.parametrize("reply, kept", [
    ("Fine.\n**User:** next", "Fine."),      # (was kept: "Fine.\n**User:** next")
    ("Fine.\n- user: next", "Fine."),
    ("Fine.\n> *User*: next", "Fine."),
    ("Fine.\n**Agent**: more", "Fine."),
    ("**Agent:** Paris is nice.\n**User**: ok", "Paris is nice."),
    ("Fine.\n**Note:** a user: here\n- first", "Fine.\n**Note:** a user: here\n- first"),  # (no label)
])
def test_markdown_around_a_label(reply, kept):
    """A label in markdown ("**User:**", "- user:") is a label, as clean_reply takes it in training,
    for every chunking."""
    assert run([reply])[:2] == (kept, kept != reply)
    assert run(list(reply))[:2] == (kept, kept != reply)
    for cut in range(1, len(reply)):
        assert run([reply[:cut], reply[cut:]])[0] == kept
