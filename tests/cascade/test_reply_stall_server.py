"""A cascade reply's stall message names the component's server when it has one (its ``url``: the
openai adapters'), as that component's other errors do ("LLM http://...: HTTP 500: ..."; QA k45
chaos finding 6: "LLM stalled: nothing within 10 s of the request" named none). A component
without one (the embedded LLM) is named by its name, as the tandem's oracle names it
(kame.backend.llm.base.describe; review r1: was "LLM stalled" here, "LLM embedded stalled" there).
A remote client is told "stalled" only (kame.runtime.base.backend_brief: no URL). On a FakeClock."""

import pytest

from kame.cascade.config import CascadeConfig
from kame.cascade.reply import ReplyParts, ReplyPipeline
from kame.runtime.base import ErrorEvent, client_form
from kame.runtime.clock import FakeClock

from ..backend.scripted_llm import ScriptedLLM
from ..backend.test_oracle_reload import run_for
from ..backend.test_retry_after_gate import settle
from .fakes import FakeTTS

LLM_URL = "http://10.0.0.7:8000/v1/chat/completions"
TTS_URL = "http://10.0.0.8:8880/v1/audio/speech"


class _HangingTTS(FakeTTS):
    """Says nothing, ever."""

    url = TTS_URL

    async def synthesize(self, text):
        await self.clock.sleep(1e9)
        yield  # (never)


def make(llm, tts_cls=FakeTTS):
    clock, out = FakeClock(), []
    parts = ReplyParts(llm, tts_cls(clock), CascadeConfig(first_timeout=3.0, chunk_timeout=1.5), clock, out.append)
    rp = ReplyPipeline(parts, metric=lambda *a: None)
    rp.start([], t_user_end=0.0, turn_id=1)
    return rp, clock, out


def errors(out):
    return [o for o in out if isinstance(o, ErrorEvent)]


async def test_an_llm_stall_names_its_server():
    llm = ScriptedLLM()
    llm.url = LLM_URL
    rp, clock, out = make(llm)
    await settle()
    await run_for(clock, 3.5)
    await rp.wait()
    [ev] = errors(out)
    assert ev.message == (f"llm scripted failed during the reply to turn 1: LLM {LLM_URL} stalled: nothing within "
                          "3 s of the request")
    assert "10.0.0.7" not in client_form(ev).message and "stalled" in client_form(ev).message


class _HangingLocalTTS(_HangingTTS):
    url = None  # (no server: a local TTS)


@pytest.mark.parametrize("tts, named", [(_HangingTTS, f"TTS {TTS_URL}"), (_HangingLocalTTS, "TTS fake-tts")],
                         ids=["its-server", "no-server-its-name"])
async def test_a_tts_stall_names_its_server_or_else_its_name(tts, named):
    llm = ScriptedLLM()
    rp, clock, out = make(llm, tts)
    await settle()
    llm.calls[0].send("Fine, thanks.")
    llm.calls[0].end()
    await settle()
    await run_for(clock, 3.5)
    await rp.wait()
    [ev] = errors(out)
    assert f"{named} stalled: nothing within 3 s of the request" in ev.message, ev.message


async def test_a_component_with_no_server_is_named_by_its_name_as_the_oracle_names_it():
    rp, clock, out = make(ScriptedLLM())
    await settle()
    await run_for(clock, 3.5)
    await rp.wait()
    assert [e.message for e in errors(out)] == [
        "llm scripted failed during the reply to turn 1: LLM scripted stalled: nothing within 3 s of the request"]
