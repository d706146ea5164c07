"""Exception types shared across kame. Every user-facing failure raises one of these with a
message that says what was wrong and what to do."""


class KameError(Exception):
    """Base class of kame's own errors."""


class ConfigError(KameError, ValueError):
    """A config key or value is unknown or invalid (the message names it)."""


class PluginError(ConfigError):
    """A plugin (--plugin, KAME_PLUGINS, an installed package's entry point) could not be loaded:
    not the fault of the config key whose check happened to load it."""


class CheckpointError(KameError):
    """A checkpoint is missing, incomplete, or does not match the config. ``needs_oracle``: the
    weights are a KAME file's that load with the oracle stream on (load_frontend's oracle=True,
    kame run's frontend.oracle=on), though its config says none."""

    needs_oracle: bool = False


class AudioFormatError(KameError, ValueError):
    """Audio with a wrong sample rate, channel count, dtype, or corrupt content."""


class NotAvailableError(KameError):
    """A component that is not implemented yet, or whose optional dependency is missing."""


class MissingPackageError(NotAvailableError, ImportError):
    """A component's optional package is not installed (the message names the extra to install)."""


class BackendError(KameError):
    """An STT/LLM/TTS service failed (network, protocol, timeout). ``retry_after``: seconds the
    service asked to wait before the next request (HTTP 429's Retry-After), if it said.
    ``restarting``: the component found itself broken and is restarting, so a new request (which
    waits for that restart) will work: the embedded LLM's child that died while idle; a consumer
    may ask again once (the cascade's reply does)."""

    retry_after: float | None = None
    restarting: bool = False


def install_hint(extra: str) -> str:
    """How to install an optional extra: kame's distribution is ``kame-tandem`` (the PyPI name
    ``kame`` is another project), usually installed editable from its checkout by setup.sh."""
    return f"pip install 'kame-tandem[{extra}]' (in a kame checkout: .venv/bin/pip install -e '.[{extra}]')"


def missing_modules(*names: str) -> list[str]:
    """Those of ``names`` that cannot be imported: looked up (importlib's find_spec), not imported,
    so a check before any work costs nothing. A module in sys.modules without a spec (a test's
    stand-in) counts as there; one set to None there (how tests hide a package) as missing."""
    import importlib.util

    def there(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except ValueError:
            return True

    return [n for n in names if not there(n)]
