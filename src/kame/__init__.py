"""kame — real-time tandem voice agents (a full-duplex front-end fed by an LLM oracle).

Package map (see README "Architecture"):
  model/    pure torch: the Moshi-architecture LM with the oracle stream, its stepper, loading
  codec/    audio <-> tokens: Mimi (published checkpoints) and the embedded CPU codec
  backend/  asynchronous knowledge: streaming STT, LLM, TTS, and the oracle producer
  runtime/  sessions, frame clock, batched stepping worker, metrics, file mode
  server/   WebSocket server (Moshi protocol + kame metadata) and the browser page
  cascade/  the STT -> LLM -> TTS baseline built from the same parts
  bench/    benchmarks behind `kame bench ...`
"""

__version__ = "0.1.0"
