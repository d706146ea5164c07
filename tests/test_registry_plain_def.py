"""A plugin's stream_chat / stream / synthesize written as a plain ``def`` (docs/backend.md: it must
return an async iterator). One whose source shows it never does (``return "hi"``, ``return
[...]``, no return at all) is a ConfigError when the component is created, naming the method and
the line, without calling it (was: created, and every request then failed with Python's "'async
for' requires an object with __aiter__ method", at a line of kame). A plain def that returns an
async iterator (a wrapper, a decorated method) stays legal; one whose return kame cannot read
ahead (a call) is checked when kame calls it: a BackendError naming the plugin's method and what
it returned (kame.backend.llm.base.check_stream), for an LLM (every consumer reads it through
text_stream) and an STT (open_stream)."""

import asyncio
import functools
import inspect
import re

import pytest

from kame import registry
from kame.backend.llm.base import check_stream, collect_reply
from kame.backend.stt.base import open_stream
from kame.backend.types import ChatMessage
from kame.errors import BackendError, ConfigError


def _line(func) -> str:
    return f"test_registry_plain_def.py:{inspect.getsourcelines(func)[1]}"


class ReturnsText:
    def stream_chat(self, messages, **kw):
        return "hi"


class ReturnsNothing:
    def stream(self, frames):
        """Not written yet."""


class ReturnsList:
    def synthesize(self, text):
        if text:
            return [0.0, 0.0]
        return None


class ReturnsFString:
    def stream_chat(self, messages, **kw):
        return f"you said {messages[-1].content}"


def _source_line(cls, method, text):
    lines, first = inspect.getsourcelines(getattr(cls, method))
    return first + next(i for i, line in enumerate(lines) if text in line)


@pytest.mark.parametrize("kind, cls, method, gives", [  # <the line's text>: its number
    ("llm", ReturnsText, "stream_chat", "str 'hi' \\(test_registry_plain_def.py:<return \"hi\">\\)"),
    ("stt", ReturnsNothing, "stream", "None \\(no return: test_registry_plain_def.py:<def>\\)"),
    ("tts", ReturnsList, "synthesize", "list \\(test_registry_plain_def.py:<return [>\\) or None "
                                       "\\(test_registry_plain_def.py:<return None>\\)"),
    ("llm", ReturnsFString, "stream_chat", "str \\(test_registry_plain_def.py:<return f>\\)"),
])
def test_a_plain_def_that_never_returns_an_async_iterator_is_refused_at_creation(kind, cls, method, gives, scratch):
    gives = re.sub(r"<([^>]*)>", lambda m: str(_source_line(cls, method, m[1])), gives)
    registry.register(kind, "mine", lambda arg=None, **kw: cls())
    with pytest.raises(ConfigError, match=rf"^{kind} 'mine': its {cls.__name__}.{method}\(\) is a plain function "
                                          rf"\(def\) that returns {gives}, not an async iterator, but kame reads it "
                                          rf"with 'async for': write it as an async generator, 'async def {method}"):
        registry.create(kind, "mine")


def _logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


class Wrapper:  # legal: a plain def returning an async generator's iterator
    async def _reply(self, messages):
        yield "from the wrapper"

    def stream_chat(self, messages, **kw):
        return self._reply(messages)


class Decorated:  # legal: a decorator's plain wrapper around an async generator
    @_logged
    async def stream_chat(self, messages, **kw):
        yield "decorated"


class OnlyRaises:  # kame cannot know: left to the call
    def stream_chat(self, messages, **kw):
        raise NotImplementedError


class ReturnsACall:  # kame cannot know what a call returns without making it: checked when called
    def stream_chat(self, messages, **kw):
        return str("hi")


@pytest.mark.parametrize("cls, says", [(Wrapper, "from the wrapper"), (Decorated, "decorated")])
def test_a_plain_def_returning_an_async_iterator_stays_legal(cls, says, scratch):
    registry.register("llm", "mine", lambda arg=None, **kw: cls())
    llm = registry.create("llm", "mine")
    assert asyncio.run(collect_reply(llm, [ChatMessage("user", "hi")], timeout_s=5)) == says


def test_a_plain_def_whose_return_cannot_be_read_ahead_is_created(scratch):
    for cls in (OnlyRaises, ReturnsACall):
        registry.register("llm", "mine", lambda arg=None, cls=cls, **kw: cls())
        assert isinstance(registry.create("llm", "mine"), cls)


def test_an_llm_returning_no_async_iterator_is_a_backend_error_naming_its_method():
    with pytest.raises(BackendError) as err:
        asyncio.run(collect_reply(ReturnsACall(), [ChatMessage("user", "hi")], timeout_s=5))
    assert str(err.value) == (
        f"LLM ReturnsACall broke its interface: its ReturnsACall.stream_chat() ({_line(ReturnsACall.stream_chat)}) "
        "returned str 'hi', expected an async iterator (kame reads it with 'async for': write it as "
        "'async def stream_chat(...)' that yields)")


class SttReturnsACall:
    def stream(self, frames):
        return dict(text="hi")


def test_an_stt_returning_no_async_iterator_is_a_backend_error_naming_its_method():
    async def frames():
        yield None

    with pytest.raises(BackendError, match=rf"^STT SttReturnsACall broke its interface: its SttReturnsACall.stream\(\) "
                                           rf"\({_line(SttReturnsACall.stream)}\) returned dict \{{'text': 'hi'\}}, "
                                           "expected an async iterator"):
        open_stream(SttReturnsACall(), frames())


def test_a_wrapper_names_the_method_of_the_part_it_wraps_and_a_coroutine_is_closed():
    class Watched:  # as kame.runtime.backend.WatchedLLM: named by its spec, the part's method is .llm's
        name = "mine:x"

        def __init__(self, llm):
            self.llm = llm

    async def answer():
        return "hi"

    coro = answer()
    with pytest.raises(BackendError, match=r"^LLM mine:x broke its interface: its ReturnsACall.stream_chat\(\) "
                                           r"\(test_registry_plain_def.py:\d+\) returned coroutine"):
        check_stream("llm", Watched(ReturnsACall()), coro)
    assert coro.cr_frame is None  # closed: no "never awaited" warning
    assert check_stream("llm", None, Wrapper().stream_chat([])) is not None  # an async iterator: handed back


class _Mine:
    async def stream_chat(self, messages, **kw):
        yield "hi"


def test_a_factory_that_returns_the_class_is_told_to_return_an_instance(scratch):
    """(review r4 #5; was: created, its unbound stream_chat passed every check, and it failed at the
    first turn)"""
    registry.register("llm", "classy", lambda arg=None, **kw: _Mine)
    with pytest.raises(ConfigError, match=r"^llm 'classy': its factory returned the class _Mine, not an instance "
                                          r"of it: return _Mine\(\.\.\.\)"):
        registry.create("llm", "classy")
    registry.register("llm", "classy", lambda arg=None, **kw: _Mine())
    assert isinstance(registry.create("llm", "classy"), _Mine)
