"""Config and registry checks found missing by a QA sweep: runtime.torch_threads and frontend.seed
have upper bounds (was: accepted, then every step / the load failed with an overflow), an empty
server.host is refused at load; two plugin files registering one scheme clash (was: the later
silently won); check_spec names "or 'none'" only where the error is which spec to give."""

import textwrap

import pytest

from kame import registry
from kame.config import load_config
from kame.errors import ConfigError, PluginError


@pytest.fixture
def scratch():
    """The registry as it was before the test: schemes added removed, built-ins replaced restored."""
    registry.schemes("llm")  # the built-in table first
    before = {kind: dict(entries) for kind, entries in registry._ENTRIES.items()}
    plugins = set(registry._PLUGINS)
    yield
    for kind, entries in registry._ENTRIES.items():
        entries.clear()
        entries.update(before.get(kind, {}))
    registry._PLUGINS.intersection_update(plugins)


def test_torch_threads_has_an_upper_bound():
    assert load_config(None, ["runtime.torch_threads=1024"]).runtime.torch_threads == 1024
    with pytest.raises(ConfigError, match=r"runtime.torch_threads: must be <= 1024, got 2147483648"):
        load_config(None, ["runtime.torch_threads=2147483648"])


def test_frontend_seed_has_an_upper_bound():
    assert load_config(None, [f"frontend.seed={2**64 - 1}"]).frontend.seed == 2**64 - 1
    with pytest.raises(ConfigError, match=r"frontend.seed: must be <= 18446744073709551615, got 18446744073709551616"):
        load_config(None, ["frontend.seed=18446744073709551616"])


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_server_host_is_refused(host):
    with pytest.raises(ConfigError, match=r"server.host: empty; give the address to listen on"):
        load_config(None, [f"server.host={host}"])


def _llm(arg=None, **kw):
    return object()


def test_another_plugin_file_cannot_take_a_plugin_scheme_silently(scratch, tmp_path):
    registry.register("llm", "sweep_echo", _llm, help="mine")
    registry.register("llm", "sweep_echo", _llm, help="mine again")  # the same file: replaces it
    other = tmp_path / "other_plugin.py"
    other.write_text(textwrap.dedent("""
        from kame import registry
        registry.register("llm", "sweep_echo", lambda arg=None, **kw: None)
    """))
    with pytest.raises(PluginError, match=r"'sweep_echo' is already a llm scheme, registered by .*test_config_sweep"
                                          r"\.py \(mine again\); pick another scheme name, or pass replace=True"):
        registry.load_plugins([str(other)])
    assert registry.schemes("llm")["sweep_echo"].help == "mine again"
    other.write_text(other.read_text().replace("**kw: None)", "**kw: None, replace=True)"))
    registry.load_plugins([str(other)])
    assert registry.schemes("llm")["sweep_echo"].help == ""


def test_check_spec_names_the_alternative_only_where_it_answers(monkeypatch):
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    with pytest.raises(ConfigError) as err:
        registry.check_spec("stt", "pocketsphinx;x=1", also=("none",))
    assert str(err.value) == "stt spec 'pocketsphinx;x=1': pocketsphinx takes no options after ';'"
    with pytest.raises(ConfigError, match=r"names no MODEL: give openai:MODEL \(or set OPENAI_MODEL\)$"):
        registry.check_spec("llm", "openai", also=("none",))
    with pytest.raises(ConfigError, match=r"scheme 'nosuch' is not one of .*, or 'none'"):
        registry.check_spec("llm", "nosuch", also=("none",))
