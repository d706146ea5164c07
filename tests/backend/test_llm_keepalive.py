"""An LLM generating a long "word" (a URL, code, a long number) gives no text for seconds while
its tokens keep coming: the embedded LLM's child (transformers' TextStreamer) holds a word back
until it ends. It sends an empty piece, a keep-alive, per token that released no text, and the
stall timers take it as progress but not as text (QA k43 qa6 finding 1: `kame demo --mode
cascade` failed its reply with "LLM stalled: nothing for 5 s after its last output" on a 58-character
URL). Here: the child's messages (stand-in model and tokenizer), the adapter handing keep-alives on,
and the tandem's oracle on a FakeClock; the cascade's reply: tests/cascade/test_reply_keepalive.py."""

import asyncio
from concurrent.futures import Future

import pytest

from kame.backend import childproc
from kame.backend.llm import embedded, embedded_child
from kame.backend.llm.base import text_stream
from kame.backend.oracle import OracleProducer
from kame.backend.policy import OraclePolicy
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import ChatMessage, OracleAppend
from kame.runtime.backend import WatchedLLM
from kame.runtime.clock import FakeClock

from .scripted_llm import ScriptedLLM
from .test_oracle_reload import run_for
from .test_retry_after_gate import settle, tr

# a 100-token "word": "/" and "x" in turn (TextStreamer holds text ending in a symbol back)
WORD = ["/", "x"] * 50
TOKENS = ["See", " here", ":", " https", ":"] + WORD + [" now"]


class WordTok:
    """Token i is TOKENS[i - 1] (0: end of text); three prompt tokens."""

    eos_token_id = 0

    def apply_chat_template(self, messages, **kw):
        torch = pytest.importorskip("torch")
        return {"input_ids": torch.zeros((1, 3), dtype=torch.long)}

    def decode(self, ids, **kw):
        ids = [ids] if isinstance(ids, int) else ids
        return "".join(TOKENS[i - 1] for i in ids if i)


class WordModel:
    """Generates TOKENS one at a time into the streamer, as transformers' generate does."""

    class config:
        max_position_embeddings = 1000

    def generate(self, input_ids, streamer=None, stopping_criteria=None, **kw):
        torch = pytest.importorskip("torch")
        streamer.put(input_ids)  # the prompt (skipped)
        for i in range(1, len(TOKENS) + 1):
            streamer.put(torch.tensor([i]))
        streamer.end()
        return torch.zeros((1, input_ids.shape[1] + len(TOKENS)), dtype=torch.long)


class Conn:
    def __init__(self):
        self.sent = []

    def send(self, item):
        self.sent.append(item)


def test_the_child_sends_a_keep_alive_for_each_token_of_a_word_it_holds_back():
    pytest.importorskip("transformers")
    conn = Conn()
    embedded_child._generate(conn, WordModel(), WordTok(), childproc.CTX.Value("q", 0, lock=False), 1000,
                       5, [{"role": "user", "content": "hi"}], 200, 0.0, 1.0)
    texts = [v for kind, rid, v in conn.sent if kind == "text" and rid == 5]
    assert "".join(texts) == "".join(TOKENS) and conn.sent[-1][:2] == ("end", 5)
    # one message a generated token (an empty one for each the streamer held back; was: none),
    # plus the text flushed at the end; no empty one after that
    assert len(TOKENS) <= len(texts) <= len(TOKENS) + 1 and texts.count("") >= len(WORD) - 1
    assert texts[-1] != ""


class StandInWorker:
    """Hands the adapter the child's messages at once (no child process)."""

    def __init__(self, messages):
        self.messages, self.loading, self.loaded_at = messages, False, 0.0

    def submit(self, llm, req_id, request, stop, put):
        for kind, value in self.messages:
            put(kind, value)
        done: Future = Future()
        done.set_result(None)
        return done

    def stop_request(self, req_id):
        pass


async def test_the_embedded_adapter_and_text_stream_hand_keep_alives_on():
    llm = embedded.EmbeddedLLM.__new__(embedded.EmbeddedLLM)
    llm.worker = StandInWorker([("text", "See "), ("text", ""), ("text", ""), ("text", "a/b "), ("end", None)])
    llm.stall_timeout, llm.max_tokens, llm.temperature, llm.repetition_penalty = 60.0, 10, 0.0, 1.0
    got = [p async for p in text_stream(llm.stream_chat([ChatMessage("user", "hi")]), llm)]
    assert got == ["See ", "", "", "a/b "]


def make(first=10.0, chunk=1.5):
    statuses, events, metrics = [], [], []
    llm, clock = ScriptedLLM(), FakeClock()
    p = OracleProducer(WatchedLLM(llm, lambda ok, err: statuses.append((ok, err)), "embedded"), default_tokenizer(),
                       OraclePolicy(first_token_timeout=first, chunk_timeout=chunk, retry_backoff=0.5),
                       clock=clock, on_event=events.append, metrics=metrics.append, session="s3")
    return p, llm, clock, statuses, events, metrics


async def keep_alives(call, clock: FakeClock, n: int, step: float = 0.25) -> None:
    """``n`` tokens of a held-back word, one every ``step`` clock-seconds: a keep-alive each."""
    for _ in range(n):
        await run_for(clock, step, step)
        call.send("")
        await settle()


async def test_the_oracle_takes_keep_alives_as_progress_not_text():
    p, llm, clock, statuses, events, metrics = make()
    await p.on_transcript(tr("where can i read about paris"))
    await settle()
    call = llm.calls[0]
    call.send("See here:")
    await settle()
    await keep_alives(call, clock, 100)  # 25 s of one word: the 1.5 s timer would have run out
    call.send(" https://x/x/x now.")
    call.end()
    await settle()
    assert p.stats["failed"] == 0 and p.stats["completed"] == 1 and len(llm.calls) == 1
    text = "".join(e.text for e in events if isinstance(e, OracleAppend))
    assert text.replace(" ", "").replace("\u2581", "") == "Seehere:now."  # (no URL: kame.backend.speech_text)
    assert [m.value for m in metrics if m.name == "llm_ttft"] == [0.0]  # at the first text
    await p.aclose()


async def test_keep_alives_before_the_first_text_give_the_oracle_at_least_the_chunk_limit():
    p, llm, clock, statuses, events, metrics = make(first=3.0)
    await p.on_transcript(tr("where can i read about paris"))
    await settle()
    call = llm.calls[0]
    await keep_alives(call, clock, 40)  # 10 s of a first word (was: "nothing for 3.00 s" at 3 s)
    assert p.stats["failed"] == 0 and not any(isinstance(e, OracleAppend) for e in events)
    call.send("https://x/x now.")
    call.end()
    await settle()
    assert p.stats["completed"] == 1 and statuses == [(True, None)]
    assert [m.value for m in metrics if m.name == "llm_ttft"] == [10.0]  # the first text's, not a keep-alive's
    await p.aclose()


async def test_a_silent_llm_still_stalls_the_oracle():
    p, llm, clock, statuses, _, _ = make(first=3.0)
    await p.on_transcript(tr("where can i read about paris"))
    await settle()
    await keep_alives(llm.calls[0], clock, 8)  # 2 s, then nothing
    await run_for(clock, 1.25)
    assert p.stats["failed"] == 0  # (3 s from the request not over yet)
    await run_for(clock, 0.5)
    assert p.stats["failed"] == 1 and statuses == [(True, None), (False, "LLM embedded stalled: nothing for 1.50 s")]
    await run_for(clock, 1.0)  # the back-off
    p._decide()
    await settle()
    call = llm.calls[1]
    call.send("See")
    await settle()
    await keep_alives(call, clock, 4)
    await run_for(clock, 1.5)  # after text and keep-alives: 1.5 s of nothing is a stall
    assert p.stats["failed"] == 2
    await p.aclose()
    await asyncio.sleep(0)
