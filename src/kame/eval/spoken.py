"""The user's side of ``kame eval mtbench``: its questions spoken by the --voice TTS (speak), and
the untimed warm-up run through the agent before question 1 (warm_up)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..audio import SAMPLE_RATE as SR
from .stopping import Terminated

LEAD_S = 0.5  # silence before the first question


def speak(tts, texts: list[str], gap: float) -> tuple[np.ndarray, list]:
    """The user's side: LEAD_S of silence, then each text spoken, ``gap`` seconds between them;
    with a kame.bench.latency.UserTurn per text (start/end of its speech; window_end is the next
    turn's start, or the end of the speech: the caller sets the last one)."""
    from ..backend.llm.base import check_stream
    from ..bench.latency import lay_out_turns
    from ..runtime.interrupt import run_to_end

    async def synth(text: str) -> np.ndarray:
        chunks = check_stream("tts", tts, tts.synthesize(text))  # (a plugin's that is no async iterator: named)
        return np.concatenate([c async for c in chunks] or [np.zeros(0, np.float32)])

    pcms = [run_to_end(synth(text)) for text in texts]
    return lay_out_turns(pcms, texts, gap, lead=LEAD_S, audible=True)


def warm_up(tts, agent, fast: bool, before_exit: Callable[[bool], None] = lambda term: None) -> None:
    """One untimed run before question 1: the back-end LLM warmed as kame bench latency warms it,
    then a short spoken "Hello." through ``agent`` (a kame.runtime.filerun.FileAgent: built and
    started now, with every model), so question 1 does not pay the one-off costs (an embedded
    STT's or LLM's child starting, its first decode). Ctrl-C or SIGTERM raises KeyboardInterrupt or
    Terminated; while a model still loads, the process exits at once, after ``before_exit(term)``
    (``term``: SIGTERM ended it; called only then: it says what the exit leaves)."""
    from ..bench.latency import warm_up_llm

    pcm, _ = speak(tts, ["Hello."], 0.0)
    agent.runner.run(warm_up_llm(agent.cfg.backend.llm, agent.cfg.backend.nice))
    rec = agent.play(np.concatenate([pcm, np.zeros(2 * SR, np.float32)]), fast=fast)
    if rec.get("interrupted"):  # (Ctrl-C, SIGTERM: the evaluation ends here, as in a question)
        by = rec.get("interrupted_by")
        term = by == "SIGTERM"
        if not rec.get("frames"):
            from ..backend.childproc import exit_if_loading
            from ..runtime.interrupt import exit_status

            # (a front-end still loading would hold the exit; was: before_exit() called either way, nothing said)
            exit_if_loading(exit_status(by), say=lambda _: before_exit(term))
        raise Terminated if term else KeyboardInterrupt
