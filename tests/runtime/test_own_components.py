"""Both agents check their own components= the same way, at build (kame.runtime.base.own_components),
and make session ids by the same rule (session_id_for): QA report qa1, findings 2 and 7."""

import pytest

from kame.cascade.agent import build_cascade_agent
from kame.config import load_config
from kame.runtime.base import SessionIdError, check_session_id, session_id_for
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
        check_session_id(5)
    with pytest.raises(SessionIdError, match="has a control character"):
        check_session_id("a\nb")
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


class MySTT:
    async def stream(self, frames):
        yield None


class Returns:
    def stream_chat(self, messages, **kw):
        return "hi"


def test_a_class_given_for_an_instance_is_refused():
    """(r3 finding 7: its unbound method passed the check, and the first turn failed)"""
    for make, who in ((_cascade, "CascadeAgent"), (_tandem, "TandemAgent")):
        with pytest.raises(TypeError, match=rf"^{who}\(components={{'stt': MySTT}}\): MySTT is a class; pass an "
                                            rf"instance: MySTT\(\.\.\.\)"):
            make(stt=MySTT)


@pytest.mark.parametrize("obj, why", [(NoMethod(), "it has no stream_chat"),
                                      (PlainGenerator(), r"its stream_chat is a plain generator \(def \.\.\. yield\)"),
                                      (Returns(), "its stream_chat is a plain function \\(def\\) that returns str")])
def test_the_refusal_says_what_is_wrong_with_the_method(obj, why):
    """(r3 finding 7: the reason async_method_problem gives was thrown away)"""
    with pytest.raises(TypeError, match=rf"an own llm needs an async generator method stream_chat\(\.\.\.\), and {why}"):
        _tandem(llm=obj)


async def test_a_tandem_given_backend_names_its_stt_and_llm():
    """(r3 finding 3: with backend= given, strings under "stt" / "llm" are the only way to name them
    for the info Meta (file mode's and runreport's STT checks read components["stt"]); b0fcd25 refused
    them. Without backend= they are refused as before: test_a_string_under_a_part_s_key_...)"""
    agent = TandemAgent(load_config(None, {"backend.stt": "none", "backend.llm": "none", "runtime.vad": "energy"}),
                        clock=FakeClock(), frame_models=FakeFrameModel, backend=lambda s: None,
                        components={"stt": "whisper", "llm": "echo", "frontend": "fake"})
    try:
        s = await agent.open_session()
        info = await anext(aiter(s.outputs()))
        assert info.data["type"] == "info" and (info.data["stt"], info.data["llm"]) == ("whisper", "echo")
        await s.close()
    finally:
        await agent.stop()
    with pytest.raises(TypeError, match=r"give either backend= .* or own STT / LLM objects"):
        TandemAgent(load_config(None, {}), clock=FakeClock(), frame_models=FakeFrameModel, backend=lambda s: None,
                    components={"stt": MySTT()})


def test_a_name_under_the_tandems_tts_is_said_as_a_name():
    """(r3 finding 3: {"tts": "piper"} was told "a tts object is the cascade's")"""
    with pytest.raises(TypeError, match=r"^TandemAgent\(components={'tts': str}\): 'piper' is a name, and a tandem "
                                        r"takes no tts in components= .*; set cascade.tts = 'piper' for a tandem's "
                                        r"hybrid-routing TTS"):
        _tandem(tts="piper")


@pytest.mark.parametrize("mode", ["cascade", "tandem"])
@pytest.mark.parametrize("bad, error", [(7, TypeError), ("a\nb", SessionIdError)])
async def test_a_bad_session_id_is_refused_before_the_agent_starts_or_waits(mode, bad, error):
    """(r3 finding 2: checked after start() and the capacity check: the models were loaded first,
    and on a full agent the caller was told CapacityError)"""
    clock = FakeClock()
    cfg = {"runtime.max_sessions": 1}
    if mode == "cascade":
        agent = build_cascade_agent(load_config(None, {"mode": "cascade", "runtime.vad": "energy", **cfg}), clock=clock,
                                    components={"stt": FakeSTT(), "llm": FakeLLM(clock, ["Hi."]), "tts": FakeTTS(clock),
                                                "vad_factory": FakeVAD})
    else:
        agent = TandemAgent(load_config(None, {"backend.stt": "none", "backend.llm": "none", "runtime.vad": "energy",
                                               **cfg}), clock=clock, frame_models=FakeFrameModel)
    try:
        with pytest.raises(error):
            await agent.open_session(bad)
        assert not agent.health()["started"]  # (was: started, every model loaded, by the refused call)
        s = await agent.open_session()
        with pytest.raises(error):  # (was: CapacityError)
            await agent.open_session(bad)
        await s.close()
    finally:
        await agent.stop()


def test_an_object_under_a_misspelled_key_is_refused_naming_the_key_meant():
    """(QA6 #3; was: taken as a name for the info Meta, and the default LLM ran in place of the
    caller's)"""
    from kame.runtime.base import own_components

    class LLM:
        async def stream_chat(self, messages, **kw):
            yield "hi"

    with pytest.raises(TypeError, match=r"^CascadeAgent\(components=\{'lmm': LLM\}\): no part is called 'lmm' "
                                        r"\(it takes stt, llm, tts.*; did you mean 'llm'\?"):
        own_components("CascadeAgent", {"lmm": LLM()}, ("stt", "llm", "tts", "vad_factory", "prompt_fn"))
    assert own_components("CascadeAgent", {"label": "mine"}, ("stt", "llm", "tts"))[0] == {"label": "mine"}
