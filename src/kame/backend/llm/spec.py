"""The options the built-in LLM specs take after ';', and their check:

    openai:gpt-4.1;first_token_timeout=60,chunk_timeout=20     # OpenAIChat("gpt-4.1", first_token_timeout=60, ...)

Light (no HTTP client): the registry calls ``check_openai`` at the config check
(kame.registry.check_spec, as the scheme's ``options`` in kame/components.py), so an unknown option
(``temperature``) or a bad value is a ConfigError naming the spec and the option before any model
loads (was: only when the LLM was created); the constructor checks its keyword arguments by the
same rules (``OPENAI_RULES``). The embedded LLM takes no options (the config check refuses them).
"""

from __future__ import annotations

from ..options import CONNECT_TIMEOUT, check_options

# name -> its bounds, as kame.backend.options.number takes them (seconds)
OPENAI_RULES = {"first_token_timeout": {"above": 0}, "chunk_timeout": {"above": 0}, "connect_timeout": CONNECT_TIMEOUT}
OPENAI_EXAMPLE = "openai:gpt-4.1;first_token_timeout=30"


def check_openai(arg: str | None, where: str) -> None:
    """The config check of an openai LLM spec's options (``arg``: the part after 'openai:')."""
    check_options(arg, where, OPENAI_RULES, OPENAI_EXAMPLE)
