"""Evaluation (roadmap, not built yet: nothing here runs).

Spoken MT-Bench (reasoning, STEM, humanities): the questions synthesized as user speech, run
through an agent in file mode (kame.runtime.filemode, the same path as ``kame run``), the
agent's transcript judged by an LLM (kame.backend.llm); latency against a cascade built from
the same parts is already measured by ``kame bench latency`` (kame.bench.latency).
"""
