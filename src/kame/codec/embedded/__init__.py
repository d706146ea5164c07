"""kame's embedded CPU codec (no downloaded weights): see model.py and docs/codecs.md.

The names below load lazily (PEP 562), so the torch-free parts of the package (config,
sentences, data, channel) and the command lines that use them start without importing torch.
"""

from .config import EmbeddedCodecConfig

__all__ = ["EmbeddedCodecConfig", "EmbeddedCodec", "EmbeddedStream", "DEFAULT_PATH", "create", "layout", "load",
           "save"]


def __getattr__(name: str):
    if name in __all__:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
