"""The embedded LLM's child process (kame.backend.llm.embedded starts it): load SmolLM2, then serve
the parent's requests one at a time from a pipe, streaming each reply's text pieces back, and the
messages the parent's dispatcher reads: "loaded" / "unavailable" / "error" at the start; per request
"prompt" (its reading begins: no stop check before the first token), "text" pieces, then "end" or
"error". A request stops at the next token once the shared ``cancel`` value names it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from ...errors import NotAvailableError
from ..priority import lower_thread_priority
from .context import PromptTooLong, fit_context
from .converted import load_model


def _no_cross_process_tqdm_lock() -> None:
    """tqdm's first bar (transformers' GGUF reader draws one, disabled or not) creates a
    multiprocessing RLock: a named semaphore registered with the parent's resource tracker. A
    child killed (SIGKILL, the OOM killer) cannot unlink it, so the parent's exit warned of "1
    leaked semaphore objects". The child is one process: a thread lock does."""
    try:
        from tqdm import tqdm
    except ImportError:  # (transformers needs tqdm; load_model says what is missing)
        return
    tqdm.set_lock(threading.RLock())


def _child_main(conn, gguf: str, cancel, nice: int = 0) -> None:
    """Child entry point: load the model, then serve requests from ``conn`` until it closes."""
    # transformers' GGUF reader draws a tqdm bar on stderr at every start; tqdm reads
    # TQDM_DISABLE when it is first imported (by torch or transformers, below)
    os.environ.setdefault("TQDM_DISABLE", "1")
    _no_cross_process_tqdm_lock()
    lower_thread_priority(nice)  # before torch starts any thread: they inherit it
    import torch

    torch.set_num_threads(1)
    try:
        model, tok = load_model(Path(gguf))
    except NotAvailableError as exc:
        conn.send(("unavailable", 0, str(exc)))
        return
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("error", 0, f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("loaded", 0, None))
    _serve(conn, model, tok, cancel)


def _serve(conn, model, tok, cancel) -> None:
    """The child's requests from ``conn``, one at a time, until the pipe closes."""
    context = int(getattr(model.config, "max_position_embeddings", 0) or 0)  # 8192 for SmolLM2
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the parent closed the pipe or exited
            return
        try:
            _generate(conn, model, tok, cancel, context, *request)
        except (EOFError, OSError, BrokenPipeError):
            return
        except Exception as exc:  # noqa: BLE001 - reported to the consumer as BackendError
            conn.send(("error", request[0], f"{type(exc).__name__}: {exc}"))


def _generate(conn, model, tok, cancel, context: int, req_id: int, messages: list[dict], max_tokens: int,
              temperature: float, repetition_penalty: float, seed: int | None = None) -> None:
    """One request in the child: its text pieces, then ("end", id, (tokens, seconds)) down ``conn``
    (or ("error", id, why) for a prompt longer than the model's ``context``). Sampled (``temperature``
    > 0) from the child's torch RNG; with a ``seed``, from one seeded so for this request alone (the
    same request and seed: the same reply), the child's RNG left as it was for the unseeded ones."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

    class _Stream(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            # once per generated token; "" for one whose text it holds back (a word not ended: a
            # URL, code), sent as a keep-alive: the consumers' stall timers see the progress
            if text or not stream_end:
                conn.send(("text", req_id, text))

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cancel.value == req_id, dtype=torch.bool)

    try:  # (counted before the prefill: answered at once, not after minutes of it)
        messages, inputs, n_in = fit_context(tok, messages, int(max_tokens), context)
    except PromptTooLong as exc:
        conn.send(("error", req_id, str(exc)))
        return
    if context > 0:  # (fit_context left at least min(max_tokens, MIN_REPLY_TOKENS) of it)
        max_tokens = min(int(max_tokens), context - n_in)
    kw = dict(max_new_tokens=int(max_tokens), repetition_penalty=repetition_penalty, pad_token_id=tok.eos_token_id)
    if temperature and temperature > 0:  # sampling draws from the child's torch RNG
        kw.update(do_sample=True, temperature=float(temperature), top_k=50)
    else:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    conn.send(("prompt", req_id, n_in))  # its reading (the prefill) starts: no stop check until its first token
    t0 = time.perf_counter()
    # (devices=[]: the CPU's RNG alone, the model's; was the default, every GPU's, which started CUDA on each)
    with torch.inference_mode(), torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        out = model.generate(**inputs, streamer=_Stream(tok, skip_prompt=True, skip_special_tokens=True),
                             stopping_criteria=StoppingCriteriaList([_Stop()]), **kw)
    conn.send(("end", req_id, (int(out.shape[1] - n_in), time.perf_counter() - t0)))
