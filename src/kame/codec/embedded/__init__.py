"""kame's embedded CPU codec (no downloaded weights): see model.py and docs/codecs.md."""

from .config import EmbeddedCodecConfig
from .model import DEFAULT_PATH, EmbeddedCodec, EmbeddedStream, create, load, save

__all__ = ["EmbeddedCodecConfig", "EmbeddedCodec", "EmbeddedStream", "DEFAULT_PATH", "create", "load", "save"]
