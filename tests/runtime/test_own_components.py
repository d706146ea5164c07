"""Both agents check their own components= the same way, at build (kame.runtime.base.own_components),
and make session ids by the same rule (session_id_for): QA report qa1, findings 2 and 7."""

import pytest

from kame.cascade.agent import build_cascade_agent
from kame.config import load_config
from kame.runtime.base import SessionIdError, session_id_for
from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent

from ..cascade.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from .fakes import FakeFrameModel


class NoMethod:
    pass


class PlainGenerator:
    def stream_chat(self, messages, **kw):  # (a plain generator: 'async for' cannot read it)
        yield "hi"


def _cascade(**components):
    return build_cascade_agent(load_config(None, {"mode": "cascade", "runtime.vad": "energy"}),
                               clock=FakeClock(), components=components)


def _tandem(**components):
    return TandemAgent(load_config(None, {"backend.stt": "none", "backend.llm": "none", "runtime.vad": "energy"}),
                       clock=FakeClock(), frame_models=FakeFrameModel, components=components)


@pytest.mark.parametrize("make, who", [(_cascade, "CascadeAgent"), (_tandem, "TandemAgent")])
@pytest.mark.parametrize("key, obj, method", [("llm", NoMethod(), "stream_chat"), ("llm", PlainGenerator(), "stream_chat"),
                                              ("stt", NoMethod(), "stream")])
def test_an_own_part_without_its_async_method_is_refused_at_build_in_both_modes(make, who, key, obj, method):
    """(was: the cascade took it, and every turn failed with "'NoMethod' object has no attribute
    'stream_chat'"; the tandem refused it)"""
    with pytest.raises(TypeError, match=rf"^{who}\(components={{'{key}': {type(obj).__name__}}}\): an own {key} needs "
                                        rf"an async generator method {method}\(\.\.\.\)"):
        make(**{key: obj})


def test_the_cascade_checks_its_tts_vad_factory_and_prompt_fn_too():
    with pytest.raises(TypeError, match=r"an own tts needs an async generator method synthesize"):
        _cascade(tts=NoMethod())
    with pytest.raises(TypeError, match=r"'vad_factory': FakeVAD}\): a vad_factory is a callable that returns a VAD"):
        _cascade(vad_factory=FakeVAD())  # (a VAD, not its factory)
    with pytest.raises(TypeError, match=r"a prompt_fn is a callable"):
        _cascade(prompt_fn=["system prompt"])


@pytest.mark.parametrize("make, who", [(_cascade, "CascadeAgent"), (_tandem, "TandemAgent")])
def test_a_string_under_a_part_s_key_is_refused_the_same_way_in_both_modes(make, who):
    """(was: the cascade took "echo" as the LLM object itself, every turn failed; the tandem took
    it as a name and ran backend.llm instead, silently)"""
    with pytest.raises(TypeError, match=rf"^{who}\(components={{'llm': str}}\): 'openai:gpt-4.1' is a name, not an "
                                        rf"LLM: pass your own llm object there, or leave the key out; to use a "
                                        rf"registered one by its name, set it in the config: backend.llm = "
                                        rf"'openai:gpt-4.1'"):
        make(llm="openai:gpt-4.1")


async def test_own_parts_that_pass_are_used_and_none_is_as_if_not_given():
    clock = FakeClock()
    stt, llm, tts = FakeSTT(), FakeLLM(clock, ["Hi."]), FakeTTS(clock)
    agent = build_cascade_agent(load_config(None, {"mode": "cascade", "runtime.vad": "energy"}), clock=clock,
                                components={"stt": stt, "llm": llm, "tts": tts, "prompt_fn": None, "note": "mine"})
    await agent.start()
    try:
        assert (agent.stt, agent.llm, agent.tts) == (stt, llm, tts) and agent.components["note"] == "mine"
    finally:
        await agent.stop()
    tandem = _tandem(frontend="fake", llm=None)  # (other keys: names for the info Meta)
    assert tandem.components == {"frontend": "fake"} and not tandem._own


def test_an_empty_id_is_made_by_the_agent_and_never_one_in_use():
    """(was: "" was taken as a given id, free; the tandem's session then made "s1" unchecked, the
    id of another open session; the cascade's session got the id "")"""
    made = iter(["s1", "s2"])
    assert session_id_for("", {"s1"}, lambda: next(made)) == "s2"
    assert session_id_for(None, set(), lambda: "c7") == "c7"
    assert session_id_for("mine", set(), lambda: "c7") == "mine"


def test_a_session_id_that_is_not_a_printable_str_is_refused():
    with pytest.raises(TypeError, match=r"open_session\(session_id\): expected a str or None, got int 5; pass str\(5\)"):
        session_id_for(5, set(), lambda: "s1")
    with pytest.raises(SessionIdError, match="has a control character"):
        session_id_for("a\nb", set(), lambda: "s1")
    with pytest.raises(SessionIdError, match="is in use by an open session"):
        session_id_for("a", {"a"}, lambda: "s1")


@pytest.mark.parametrize("mode", ["cascade", "tandem"])
async def test_open_session_with_an_empty_id_beside_a_given_one(mode):
    clock = FakeClock()
    if mode == "cascade":
        agent = build_cascade_agent(load_config(None, {"mode": "cascade", "runtime.vad": "energy"}), clock=clock,
                                    components={"stt": FakeSTT(), "llm": FakeLLM(clock, ["Hi."]), "tts": FakeTTS(clock),
                                                "vad_factory": FakeVAD})
    else:
        agent = _tandem()
    try:
        a = await agent.open_session("s1" if mode == "tandem" else "c1")
        b = await agent.open_session("")
        assert b.id and b.id != a.id
        with pytest.raises(TypeError, match="expected a str or None"):
            await agent.open_session(5)
    finally:
        await agent.stop()
