"""kame — real-time tandem voice agents (a full-duplex front-end fed by an LLM oracle).

Package map (see README "Architecture"):
  model/    pure torch: the Moshi-architecture LM with the oracle stream, its stepper, loading
  codec/    audio <-> tokens: Mimi (published checkpoints) and the embedded CPU codec
  backend/  asynchronous knowledge: streaming STT, LLM, TTS, and the oracle producer
  runtime/  sessions, frame clock, batched stepping worker, metrics, file mode
  server/   WebSocket server (Moshi protocol + kame metadata) and the browser page
  cascade/  the STT -> LLM -> TTS baseline built from the same parts
  bench/    benchmarks behind `kame bench ...`

As a library: ``kame.load_config`` and ``kame.build_agent`` start an agent; everything else a
program needs (the outputs' types, clocks, metrics) is in ``kame.runtime`` (docs/runtime.md).
Both are loaded on first use: ``import kame`` stays light.
"""

__version__ = "0.1.0"

_EXPORTS = ("load_config", "build_agent")  # from kame.runtime

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'kame' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
