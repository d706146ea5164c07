"""Config and registry checks found missing by a QA sweep: runtime.torch_threads and frontend.seed
have upper bounds (was: accepted, then every step / the load failed with an overflow), an empty
server.host is refused at load; two plugins registering one scheme clash, through a shared helper
too, and registering outside plugin loading replaces (was: the later plugin silently won, notebook
cells clashed); check_spec names "or 'none'" only where the error is which spec to give."""

import textwrap

import pytest

from kame import registry
from kame.config import load_config
from kame.errors import ConfigError, PluginError


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


def test_another_plugin_cannot_take_a_plugin_scheme_silently(scratch, tmp_path):
    first, other = tmp_path / "first_plugin.py", tmp_path / "other_plugin.py"
    first.write_text('from kame import registry\nregistry.register("llm", "sweep_echo", lambda arg=None, **kw: None, '
                     'help="mine")\n')
    other.write_text('from kame import registry\nregistry.register("llm", "sweep_echo", lambda arg=None, **kw: None)\n')
    registry.load_plugins([str(first)])
    with pytest.raises(PluginError, match=r"'sweep_echo' is already a llm scheme, registered by the plugin "
                                          r".*first_plugin\.py \(mine\); pick another scheme name, or pass replace=True"):
        registry.load_plugins([str(other)])
    assert registry.schemes("llm")["sweep_echo"].help == "mine"
    other.write_text(other.read_text().replace("**kw: None)", "**kw: None, replace=True)"))
    registry.load_plugins([str(other)])
    assert registry.schemes("llm")["sweep_echo"].help == ""


def test_two_plugins_registering_through_a_shared_helper_clash(scratch, tmp_path, monkeypatch):
    """The origin is the plugin being loaded, not the file of the register() call (was: the helper's
    file for both, so the later plugin silently won)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "sweep_shared_helper.py").write_text(textwrap.dedent("""
        from kame import registry
        def component(kind, scheme, **kw):
            def deco(f):
                registry.register(kind, scheme, f, **kw)
                return f
            return deco
    """))
    for name in ("a", "b"):
        (tmp_path / f"plugin_{name}.py").write_text(textwrap.dedent(f"""
            from sweep_shared_helper import component
            @component("llm", "sweep_shared", help="{name}'s")
            def create(arg=None, **kw):
                return None
        """))
    registry.load_plugins([str(tmp_path / "plugin_a.py")])
    with pytest.raises(PluginError, match=r"plugin '.*plugin_b.py' .*'sweep_shared' is already a llm scheme, "
                                          r"registered by the plugin .*plugin_a\.py \(a's\)"):
        registry.load_plugins([str(tmp_path / "plugin_b.py")])
    assert registry.schemes("llm")["sweep_shared"].help == "a's"


def test_one_plugin_loaded_by_path_and_by_name_is_one(scratch, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "sweep_twice_plugin.py").write_text('from kame import registry\n'
                                                    'registry.register("llm", "sweep_twice", lambda arg=None, **kw: 1)\n')
    registry.load_plugins([str(tmp_path / "sweep_twice_plugin.py")])
    registry.load_plugins(["sweep_twice_plugin"])  # (its module imported again, by name: no clash)
    assert registry.schemes("llm")["sweep_twice"].origin == str((tmp_path / "sweep_twice_plugin.py").resolve())


def test_registering_again_outside_plugin_loading_replaces(scratch):
    """A program, a test or a notebook cell run again (each cell its own file name) registers again:
    it replaces (was: a clash between two cells' "files")."""
    for n, filename in enumerate(["<ipython-input-1-aa>", "<ipython-input-2-bb>", "/tmp/ipykernel_1/2.py"]):
        exec(compile(f"from kame import registry\nregistry.register('llm', 'sweep_cell', lambda arg=None, **kw: {n}, "
                     f"help='{n}')", filename, "exec"))
    assert registry.schemes("llm")["sweep_cell"].help == "2"
    assert registry.schemes("llm")["sweep_cell"].origin is None
    registry.register("llm", "sweep_cell", _llm, help="api")
    assert registry.schemes("llm")["sweep_cell"].help == "api"


def test_check_spec_names_the_alternative_only_where_it_answers(monkeypatch):
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    with pytest.raises(ConfigError) as err:
        registry.check_spec("stt", "pocketsphinx;x=1", also=("none",))
    assert str(err.value) == "stt spec 'pocketsphinx;x=1': pocketsphinx takes no options after ';'"
    with pytest.raises(ConfigError, match=r"names no MODEL: give openai:MODEL \(or set OPENAI_MODEL\)$"):
        registry.check_spec("llm", "openai", also=("none",))
    with pytest.raises(ConfigError, match=r"scheme 'nosuch' is not one of .*, or 'none'"):
        registry.check_spec("llm", "nosuch", also=("none",))


def test_a_plugin_packages_own_registrations_are_that_plugins(scratch, tmp_path, monkeypatch):
    """A dotted plugin's parent package registers while it is found (find_spec imports it): that is
    the plugin's too (was: no origin, so another plugin silently replaced it)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    for pkg, body in (("sweep_pkga", 'from kame import registry\n'
                                     'registry.register("llm", "sweep_pkg", lambda arg=None, **kw: 1, help="a")\n'),
                      ("sweep_pkgb", "")):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(body)
        (tmp_path / pkg / "plug.py").write_text("" if pkg == "sweep_pkga" else
                                                'from kame import registry\n'
                                                'registry.register("llm", "sweep_pkg", lambda arg=None, **kw: 2)\n')
    registry.load_plugins(["sweep_pkga.plug"])
    with pytest.raises(PluginError, match=r"'sweep_pkg' is already a llm scheme, registered by the plugin "
                                          r"sweep_pkga\.plug"):
        registry.load_plugins(["sweep_pkgb.plug"])


def test_backend_history_chars_is_a_config_key():
    """The LLM prompt's character budget (kame.backend.prompt.HISTORY_CHARS) has a key (was: only
    PromptConfig.max_lines, a Python-only setting, bounded the prompt: ~6k tokens at its cap)."""
    from kame.backend.prompt import HISTORY_CHARS

    assert load_config(None, []).backend.history_chars == HISTORY_CHARS
    assert load_config(None, ["backend.history_chars=0"]).backend.history_chars == 0  # (0: no limit)
    with pytest.raises(ConfigError, match=r"backend.history_chars: must be >= 0, got -1"):
        load_config(None, ["backend.history_chars=-1"])


def test_a_config_file_with_a_utf8_bom_is_read(tmp_path):
    """(was: "not valid TOML: Invalid statement (at line 1, column 1)"; the QA reader skips a BOM too)"""
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf[backend]\nllm = \"none\"\n")
    assert load_config(bom).backend.llm == "none"
