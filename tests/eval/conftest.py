"""The runtime tests' fake components (fake STT/LLM/TTS), for the file-mode runs of the eval tests;
the train tests' fake codec (spec "fake"), for kame eval follow's."""

from tests.runtime.conftest import fake_components
from tests.train.conftest import fake_codec

__all__ = ["fake_components", "fake_codec"]  # (fixtures: used by name)
