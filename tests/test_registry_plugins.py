"""kame.registry as a plugin author meets it: register() refuses an unknown kind and (without
replace=True) a built-in scheme; a spec's options straight after the scheme are its options (refused by a built-in that takes none); a front-end's
file:PATH is refused as kame.config refuses it; a factory kame cannot call is named."""

import importlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kame import registry
from kame.errors import ConfigError, KameError

ROOT = Path(__file__).resolve().parents[1]


class _LLM:
    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        yield "mine"


def _create_llm(arg=None, **kw):
    return _LLM()


def test_an_unknown_kind_is_refused_naming_the_kinds(scratch):
    # (was: registered under "ltt", a scheme nobody would ever look up)
    with pytest.raises(ConfigError) as err:
        registry.register("ltt", "mine", _create_llm)
    assert str(err.value) == ("register('ltt', 'mine', ...): unknown component kind 'ltt'; "
                              "the kinds are codec, frontend, stt, llm, tts")
    assert "ltt" not in registry._ENTRIES
    with pytest.raises(ConfigError, match="unknown component kind 'ltt'; the kinds are codec, frontend"):
        registry.check_spec("ltt", "mine")


def test_a_built_in_scheme_is_replaced_only_with_replace_true(scratch):
    kames = registry.schemes("llm")["openai"]
    with pytest.raises(ConfigError, match=r"register\('llm', 'openai', \.\.\.\): 'openai' is kame's built-in llm "
                                          r"scheme \(.*\); pick another scheme name, or pass replace=True"):
        registry.register("llm", "openai", _create_llm)  # (was: kame's silently hidden)
    assert registry.schemes("llm")["openai"] is kames
    registry.register("llm", "openai", _create_llm, replace=True)
    assert isinstance(registry.create("llm", "openai:anything"), _LLM)


def test_a_plugin_registered_before_the_built_in_table_is_checked_against_it_and_kept():
    """A fresh process whose first registry call is a plugin's register(): the built-in table
    loads first (was: it loaded later, silently over the plugin's replacement)."""
    code = textwrap.dedent("""
        from kame import registry
        from kame.errors import ConfigError
        try:
            registry.register("llm", "openai", "mycomps:create")
        except ConfigError as exc:
            print("refused:", exc)
        registry.register("llm", "openai", "mycomps:create", replace=True)
        print("kept:", registry.schemes("llm")["openai"].target)
    """)
    env = {k: v for k, v in os.environ.items() if k != registry.PLUGINS_ENV}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused: register('llm', 'openai', ...): 'openai' is kame's built-in llm scheme" in out.stdout
    assert out.stdout.endswith("kept: mycomps:create\n")


def test_a_plugin_module_imported_twice_registers_again(tmp_path, monkeypatch, scratch):
    """Loaded by file (--plugin ./twice_comps.py) and imported by name: both register "twice"."""
    (tmp_path / "twice_comps.py").write_text(textwrap.dedent("""
        from kame import registry

        registry.register("llm", "twice", lambda arg=None, **kw: None, help="mine")
        registry.register("llm", "openai", lambda arg=None, **kw: None, replace=True)
    """))
    registry.load_plugins([str(tmp_path / "twice_comps.py")])
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("twice_comps")
    finally:
        sys.modules.pop("twice_comps", None)
    assert registry.check_spec("llm", "twice")[0].help == "mine"


def test_options_straight_after_the_scheme(scratch):
    """'mine;opt=1' is the scheme 'mine' with the options (was refused with a hint to write
    'mine:;opt=1', the form that still works)."""
    registry.register("llm", "mine", _create_llm)
    assert registry.check_spec("llm", "mine;opt=1")[1] == ";opt=1"
    assert registry.check_spec("llm", "mine:;opt=1")[1] == ";opt=1"
    assert registry.parse_spec("embedded;whisper_interval=1.0,final_beam=2") == \
        ("embedded", ";whisper_interval=1.0,final_beam=2")
    assert registry.parse_spec("openai:gpt-4o;timeout=3") == ("openai", "gpt-4o;timeout=3")  # ':' first: as before
    with pytest.raises(ConfigError, match="names no MODEL: give openai:MODEL"):  # options are not the MODEL
        registry.check_spec("stt", "openai;response_format=json")
    with pytest.raises(ConfigError, match="scheme 'nosuch' is not one of"):
        registry.check_spec("llm", "nosuch;opt=1")
    assert registry.parse_spec("mine;url=http://x") == ("mine", ";url=http://x")  # (';' before '://')
    # a built-in that takes no options refuses them at the config check (was: at load, as its argument)
    for kind, spec in (("codec", "embedded;num_codebooks=4"), ("llm", "embedded;n_ctx=512"),
                       ("stt", "pocketsphinx:;x=1")):
        with pytest.raises(ConfigError, match=f"{kind} spec '{re.escape(spec)}': .* takes no options after ';'"):
            registry.check_spec(kind, spec)
    # (random: front-ends take config keys since; an unknown one is refused by name)
    registry.check_spec("frontend", "random:tiny;seed=1")
    with pytest.raises(ConfigError, match="config key 'seed' is not a front-end config key"):
        registry.create("frontend", "random:tiny;seed=1")
    for kind, spec in (("stt", "whisper;final_beam=2"), ("llm", "openai:m;chunk_timeout=3"),
                       ("tts", "openai:t;speed=1")):
        registry.check_spec(kind, spec)  # (their config checks take their names: kame.backend.*.spec)
    with pytest.raises(ConfigError, match="llm spec 'openai:m;timeout=3': unknown option 'timeout'"):
        registry.check_spec("llm", "openai:m;timeout=3")  # (was: only when it was created)


@pytest.mark.parametrize("spec", ["file:ck", "file:/abs/ck", "file:", "file://ck", "file:///abs/ck", "path:ck",
                                  "./ck", "hf://org/repo", "random:tiny"])
def test_a_front_end_spec_is_taken_by_the_registry_as_the_config_takes_it(spec, tmp_path, monkeypatch):
    """file:ck was the registry's folder ck, and not a front-end spec to kame.config."""
    from kame.config import FrontendConfig

    monkeypatch.chdir(tmp_path)  # (no folder named like the specs)
    try:
        FrontendConfig(spec=spec).validate()
        config_takes = True
    except ConfigError:
        config_takes = False
    try:
        registry.check_spec("frontend", spec)
        registry_takes = True
    except ConfigError as exc:
        registry_takes = False
        if spec.startswith("file:"):
            assert "write file://" in str(exc)
    assert registry_takes == config_takes


def test_file_colon_says_how_to_write_the_path():
    with pytest.raises(ConfigError) as err:
        registry.check_spec("frontend", "file:ck")
    assert str(err.value) == ("frontend spec 'file:ck': write file://ck (or ./ck, path:ck); "
                              "'file:' without '//' is not a path")
    with pytest.raises(ConfigError, match=r"write file:///abs/ck \(or /abs/ck, path:/abs/ck\)"):
        registry.check_spec("frontend", "file:/abs/ck")


def test_a_factory_kame_cannot_call_is_named_with_the_signature_it_needs(tmp_path, scratch):
    """(was: "llm 'nullary' could not be created: TypeError: create() takes 0 positional arguments
    but 1 was given (at registry.py:228)")"""
    plugin = tmp_path / "sigcomps.py"
    plugin.write_text(textwrap.dedent("""
        from kame import registry

        def create():
            return None

        def needs_clock(arg, *, clock):
            return None

        registry.register("llm", "nullary", create)
        registry.register("stt", "needs_clock", needs_clock)
    """))
    registry.load_plugins([str(plugin)])
    with pytest.raises(ConfigError) as err:
        registry.create("llm", "nullary")
    assert str(err.value) == (
        "llm 'nullary': its factory kame_plugin_sigcomps:create (sigcomps.py:4) has the signature (), so it "
        "cannot be called as factory(arg): too many positional arguments. A factory takes the spec's arg first "
        "(the part after 'nullary:', None without it), then keyword options: def create(arg=None, **kwargs)")
    with pytest.raises(ConfigError, match=r"stt 'needs_clock': its factory kame_plugin_sigcomps:needs_clock "
                                          r"\(sigcomps.py:7\) has the signature \(arg, \*, clock\), so it cannot be "
                                          r"called as factory\(arg, nice=\.\.\.\): missing a required argument"):
        registry.create("stt", "needs_clock", nice=3)


def test_a_type_error_inside_a_factory_and_an_option_it_does_not_take_are_as_before(scratch):
    def inside(arg=None, **kw):
        raise TypeError("a bug of the factory's own")

    def no_nice(arg=None, clock=None):
        return _LLM()

    registry.register("llm", "inside", inside)
    with pytest.raises(KameError, match=r"llm 'inside' could not be created: TypeError: a bug of the factory's own "
                                        r"\(at test_registry_plugins.py:\d+\)"):
        registry.create("llm", "inside")
    registry.register("llm", "no_nice", no_nice)
    with pytest.raises(registry.UnknownOptionError, match="llm 'no_nice' has no option 'nice'"):
        registry.create("llm", "no_nice", clock=1, nice=3)
    assert isinstance(registry.create_with_optional("llm", "no_nice", clock=1, nice=3), _LLM)


@pytest.mark.parametrize("kind, method, body, wrong", [
    ("llm", "stream_chat", "def stream_chat(self, messages, **kw):\n        yield 'hi'", "a plain generator"),
    ("llm", "stream_chat", "async def stream_chat(self, messages, **kw):\n        return 'hi'", "a coroutine function"),
    ("stt", "stream", "def stream(self, frames):\n        yield None", "a plain generator"),
    ("tts", "synthesize", "async def synthesize(self, text):\n        return None", "a coroutine function"),
])
def test_a_method_kame_reads_with_async_for_is_checked_at_creation(kind, method, body, wrong, scratch):
    """A sync generator (or a coroutine) for stream_chat / stream / synthesize was found by the
    first request ("'async for' requires an object with __aiter__"), once per request."""
    ns: dict = {}
    exec(f"class Mine:\n    {body}\n", ns)
    registry.register(kind, "mine", lambda arg=None, **kw: ns["Mine"]())
    with pytest.raises(ConfigError, match=rf"{kind} 'mine': its Mine.{method}\(\) is {wrong} .*'async for': write "
                                          rf"it as an async generator, 'async def {method}\(\.\.\.\)' that yields"):
        registry.create(kind, "mine")


def test_an_async_generator_method_is_taken(scratch):
    class Mine:
        async def stream_chat(self, messages, **kw):
            yield "hi"

    registry.register("llm", "mine", lambda arg=None, **kw: Mine())
    assert isinstance(registry.create("llm", "mine"), Mine)
