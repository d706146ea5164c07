"""The runtime tests' fake components (fake STT/LLM/TTS), for the file-mode runs of the eval tests."""

from tests.runtime.conftest import fake_components

__all__ = ["fake_components"]  # (a fixture: used by name)
