"""Sessions, the frame clock, the batched stepping worker, metrics and file mode.

    from kame.runtime import build_agent        # mode "tandem" | "cascade" from a KameConfig
    from kame.runtime.engine import TandemAgent

See docs/runtime.md.
"""


def __getattr__(name):  # lazy: `import kame.runtime.base` stays light
    if name in ("build_agent", "TandemAgent"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)
