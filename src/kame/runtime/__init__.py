"""Sessions, the frame clock, the batched stepping worker, metrics and file mode.

The names a program embedding kame needs, from one place (docs/runtime.md, "Using it"):

    from kame.runtime import load_config, build_agent, AgentAudio, AgentText, Meta, ErrorEvent

    agent = build_agent(load_config())   # mode "tandem" -> TandemAgent, "cascade" -> kame.cascade
    await agent.start(); s = await agent.open_session()
    await s.push_audio(pcm)              # float32 mono 24 kHz
    async for out in s.outputs(): ...    # one reader per session (ReaderError)

They are loaded on first use: `import kame.runtime` (and `import kame.runtime.base`) stays light.
"""

import importlib

# name -> the module that defines it (relative to kame.runtime)
_EXPORTS = {
    # building and running agents
    "load_config": "..config", "KameConfig": "..config",
    "build_agent": ".engine", "TandemAgent": ".engine",
    "run_conversation": ".filemode",  # file mode (kame run) as a function
    "run_to_end": ".interrupt",  # asyncio.run whose end leaves a task that ignores its cancellation after 5 s
    # the agent/session interface and what a session outputs
    "Agent": ".base", "Session": ".base", "Output": ".base",
    "AgentAudio": ".base", "AgentText": ".base", "Meta": ".base", "ErrorEvent": ".base",
    "CapacityError": ".base", "SessionIdError": ".base", "ReaderError": ".base",
    # clocks (FakeClock: simulated time for tests)
    "Clock": ".clock", "MonotonicClock": ".clock", "FakeClock": ".clock",
    # metrics and their sinks
    "Metric": ".metrics", "MetricsSink": ".metrics", "MetricsLog": ".metrics", "null_sink": ".metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):  # lazy: importing kame.runtime loads none of them
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'kame.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value  # (the next lookup does not come here)
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
