"""kame.registry: your own components as plugins (--plugin, KAME_PLUGINS), checked registration,
and factories that fail or return the wrong thing give one clear error naming the spec."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kame import registry
from kame.errors import ConfigError, KameError

ROOT = Path(__file__).resolve().parents[1]


class _NotAnLLM:
    pass


def _boom(arg=None, **kw):
    raise ValueError("no model file here")


def test_registration_is_checked(scratch):
    with pytest.raises(ConfigError, match="'module:callable'"):
        registry.register("llm", "dotted", "mycomps.create_llm")  # a dot where the colon goes
    with pytest.raises(ConfigError, match="scheme"):
        registry.register("llm", "bad:scheme", "mycomps:create_llm")
    registry.register("llm", "direct", lambda arg=None, **kw: _NotAnLLM())  # a callable is fine


def test_a_factory_that_raises_or_returns_the_wrong_thing_is_named(scratch):
    registry.register("llm", "boom", _boom)
    with pytest.raises(KameError, match=r"llm 'boom' could not be created: ValueError: no model file here "
                                        r"\(at test_registry.py:\d+\)"):
        registry.create("llm", "boom")
    registry.register("llm", "wrong", lambda arg=None, **kw: _NotAnLLM())
    with pytest.raises(ConfigError, match=r"llm 'wrong'.*returned _NotAnLLM, which has no stream_chat\(\)"):
        registry.create("llm", "wrong")


class _DuckCodec:
    """What docs/backend.md listed for a codec (encode/decode/stream), no Codec base class."""

    def encode(self, pcm): ...

    def decode(self, codes): ...

    def stream(self, batch_size=1): ...


def test_a_codec_must_have_the_whole_codec_contract(scratch):
    """A duck-typed codec without set_num_codebooks() and the token layout's numbers is refused
    when it is created, naming what it lacks (was: accepted, then a raw AttributeError traceback
    in kame run / kame codec roundtrip)."""
    from kame.codec.base import Codec

    registry.register("codec", "duck", lambda arg=None, **kw: _DuckCodec())
    with pytest.raises(ConfigError) as err:
        registry.create("codec", "duck")
    assert str(err.value) == ("codec 'duck': its factory returned _DuckCodec, which has no set_num_codebooks(), "
                              "sample_rate, frame_rate, frame_size, num_codebooks, cardinality (a codec implements "
                              "kame's CODEC interface; subclass kame.codec.base.Codec, which has them all: "
                              "docs/codecs.md)")
    duck = _DuckCodec()  # attributes that are not numbers are missing too; the rest is found
    duck.set_num_codebooks = lambda n: None
    duck.sample_rate, duck.frame_rate, duck.frame_size, duck.num_codebooks = 24000, 12.5, 1920, 8
    duck.cardinality = True
    registry.register("codec", "duck2", lambda arg=None, **kw: duck)
    with pytest.raises(ConfigError, match=r"returned _DuckCodec, which has no cardinality \(a codec"):
        registry.create("codec", "duck2")
    duck.cardinality = np.int64(2048)  # numpy numbers are numbers
    assert registry.create("codec", "duck2") is duck

    class Sub(Codec):  # a subclass has the layout's defaults
        encode = decode = stream = set_num_codebooks = lambda self, *a: None

    registry.register("codec", "sub", lambda arg=None, **kw: Sub())
    assert isinstance(registry.create("codec", "sub"), Sub)
    assert registry.create("codec", "embedded").cardinality > 0  # the built-in ones pass


def test_a_plugin_module_that_cannot_be_imported_is_not_a_missing_kame_extra(scratch):
    registry.register("stt", "gone", "no_such_module_here:create")
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_here'") as err:
        registry.create("stt", "gone")
    assert "reinstall kame" not in str(err.value)
    with pytest.raises(ConfigError, match=r"plugin '.*missing\.py' \(from --plugin\) could not be loaded"):
        registry.load_plugins(["./missing.py"])


def test_a_check_of_options_that_cannot_be_imported_is_said_as_a_factory_that_cannot_be(scratch):
    """An entry's options check ("module:callable") is loaded as its factory is (was: a raw
    ModuleNotFoundError / AttributeError from the config check, no key or spec named)."""
    registry.register("stt", "chk", _boom, options="no_such_module_here:check")
    with pytest.raises(ConfigError, match=r"^backend.stt: stt 'chk;x=1': cannot import 'no_such_module_here', "
                                          r"registered for it: ModuleNotFoundError"):
        registry.check_key_spec("backend.stt", "stt", "chk;x=1")
    registry.register("stt", "chk2", _boom, options="kame.registry:no_such_check")
    with pytest.raises(ConfigError, match=r"^stt 'chk2': module 'kame.registry' has no 'no_such_check', "
                                          r"registered for it$"):
        registry.check_spec("stt", "chk2")


PLUGIN = textwrap.dedent("""
    from kame import registry

    def make_codec(arg=None, **kw):
        return registry.create("codec", "embedded")

    registry.register("codec", "mycodec", make_codec, help="a plugin's codec")
""")


def test_a_plugin_file_adds_a_scheme_the_command_line_can_name(tmp_path, scratch):
    """`kame --plugin ./mycomps.py codec roundtrip ... --codec mycodec` (the plugin's value is not
    taken for the command's name)."""
    import soundfile as sf

    from kame.cli import main

    plugin = tmp_path / "mycomps.py"
    plugin.write_text(PLUGIN)
    t = np.arange(24000) / 24000
    sf.write(tmp_path / "in.wav", (0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 24000)
    out = tmp_path / "out.wav"
    assert main(["--plugin", str(plugin), "codec", "roundtrip", str(tmp_path / "in.wav"), "-o", str(out),
                 "--codec", "mycodec"]) == 0
    assert sf.info(out).frames > 0


def test_plugins_from_the_environment(tmp_path):
    plugin = tmp_path / "envcomps.py"
    plugin.write_text(PLUGIN)
    env = dict(os.environ, KAME_PLUGINS=f" {plugin} ,")
    out = subprocess.run([sys.executable, "-c", "from kame import registry; print(sorted(registry.schemes('codec')))"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert "mycodec" in out
    env["KAME_PLUGINS"] = "no_such_plugin_module"
    err = subprocess.run([sys.executable, "-m", "kame.cli", "codec", "roundtrip", "x.wav", "-o", "y.wav",
                          "--codec", "mycodec"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert err.returncode == 1 and "plugin 'no_such_plugin_module' (from KAME_PLUGINS)" in err.stderr
    assert "Traceback" not in err.stderr


def test_the_tandem_back_end_creates_its_llm_through_the_registry(scratch):
    """So a failing factory is the one-line error there too (was: a raw traceback from kame run)."""
    from kame.runtime.backend import create_llm

    registry.register("llm", "boom", _boom)
    with pytest.raises(KameError, match="llm 'boom' could not be created: ValueError"):
        create_llm("boom", nice=3)


def test_an_entry_point_may_name_a_module_or_a_setup_function(tmp_path, monkeypatch, scratch):
    """"mycomps" is imported; "mycomps:setup" is imported and setup() called (was: the whole
    "mycomps:setup" taken as a module name, a ConfigError)."""
    import importlib.metadata as md

    (tmp_path / "ep_comps.py").write_text(textwrap.dedent("""
        from kame import registry

        def setup():
            registry.register("llm", "from_ep", lambda arg=None, **kw: None)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = md.EntryPoint(name="mine", value="ep_comps:setup", group=registry.ENTRY_POINT_GROUP)
    registry._load_entry_point(ep)
    assert "from_ep" in registry.schemes("llm")
    bad = md.EntryPoint(name="bad", value="ep_comps_missing:setup", group=registry.ENTRY_POINT_GROUP)
    with pytest.raises(ConfigError, match=r"plugin 'ep_comps_missing:setup' \(entry point 'bad'"):
        registry._load_entry_point(bad)


def test_a_failed_plugin_load_is_reported_again_not_skipped(monkeypatch):
    monkeypatch.setattr(registry, "_LOADED", False)
    monkeypatch.setenv(registry.PLUGINS_ENV, "no_such_plugin_module_2")
    for _ in range(2):  # (was: the second call found the registry "loaded" and went on without it)
        with pytest.raises(ConfigError, match="no_such_plugin_module_2"):
            registry.schemes("llm")
    monkeypatch.delenv(registry.PLUGINS_ENV)
    assert "openai" in registry.schemes("llm")


@pytest.mark.parametrize("kind, spec, hint", [
    ("codec", "Embedded", "; schemes are lower case: embedded"),
    ("stt", "OpenAI:gpt-4o-transcribe", "; schemes are lower case: openai:gpt-4o-transcribe"),
    ("codec", "embeded:/x.safetensors", "; did you mean embedded:/x.safetensors?"),
    ("codec", "hf://kyutai/moshiko-pytorch-bf16", "; put a scheme first, e.g. mimi:hf://kyutai/moshiko-pytorch-bf16"),
    ("stt", "hf://kyutai/stt-1b-en_fr", "; put a scheme first, e.g. kyutai:hf://kyutai/stt-1b-en_fr"),
])
def test_a_misspelled_scheme_gets_the_one_meant(kind, spec, hint):
    with pytest.raises(ConfigError) as err:
        registry.check_spec(kind, spec)
    assert str(err.value).endswith(hint)
    with pytest.raises(ConfigError) as err:
        registry.check_spec("llm", "xyz")  # nothing close: no guess
    assert str(err.value).endswith("]")  # (the known schemes; other tests may have registered more)


@pytest.mark.parametrize("sets", [[], ["backend.stt=none", "backend.llm=none"], ["codec.spec=embedded"]])
@pytest.mark.parametrize("plugin, error", [
    ("def oops(:\n", "SyntaxError"),
    ("from kame import registry\nregistry.register('llm', 'bad name', lambda arg=None, **kw: None)\n",
     "register('llm', 'bad name'"),  # the plugin's own ConfigError (was: prefixed "backend.stt: ")
])
def test_a_broken_plugin_is_not_blamed_on_the_key_whose_check_loaded_it(tmp_path, sets, plugin, error):
    # (was: "cascade.tts: plugin './bad.py' (from KAME_PLUGINS) could not be loaded", in a tandem)
    bad = tmp_path / "bad.py"
    bad.write_text(plugin)
    code = ("import sys; from kame.config import load_config; from kame.errors import PluginError\n"
            "try:\n    load_config(None, sys.argv[1:])\nexcept PluginError as exc:\n    print(exc)")
    out = subprocess.run([sys.executable, "-c", code, *sets], cwd=ROOT, env=dict(os.environ, KAME_PLUGINS=str(bad)),
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith(f"plugin '{bad}' (from KAME_PLUGINS) could not be loaded: ") \
        and error in out.stdout, out


def test_an_installed_package_that_fails_to_import_is_not_called_missing(scratch, monkeypatch):
    """Any ImportError but a missing module (a shared library that cannot be mapped under
    `ulimit -v`) is reported with its own message, not "needs a package that is not installed";
    for a component's module, a package its factory imports, and a component's own
    MissingPackageError raised from such an error."""
    from kame.errors import MissingPackageError, NotAvailableError

    mapped = ImportError("libfoo.so: failed to map segment from shared object")
    monkeypatch.setitem(sys.modules, "kame_broken_component", None)  # (a missing module, as before)
    registry.register("stt", "gone2", "kame_broken_component:create", extra="stt")
    with pytest.raises(MissingPackageError, match="not installed"):
        registry.create("stt", "gone2")

    def fails_on_import(name, *a, **kw):
        raise mapped

    registry.register("stt", "brk", "kame.backend.no_such_thing:create", extra="stt")
    real_import = registry.importlib.import_module
    monkeypatch.setattr(registry.importlib, "import_module",
                        lambda name, *a: fails_on_import(name) if name == "kame.backend.no_such_thing"
                        else real_import(name, *a))
    with pytest.raises(NotAvailableError, match="stt 'brk': a package it needs is installed but failed to import: "
                                                "ImportError: libfoo.so: failed to map segment") as e:
        registry.create("stt", "brk")
    assert "not installed" not in str(e.value)

    def lazy(arg=None, **kw):
        raise mapped

    def own_check(arg=None, **kw):
        raise MissingPackageError("foo STT needs foo: pip install foo") from mapped

    for scheme, factory in (("lazy", lazy), ("own", own_check)):
        registry.register("stt", scheme, factory)
        with pytest.raises(NotAvailableError, match="failed to import: ImportError: libfoo.so") as e:
            registry.create("stt", scheme)
        assert not isinstance(e.value, MissingPackageError) and "pip install" not in str(e.value)


def test_a_plugin_file_under_a_missing_home_is_a_config_error(scratch, monkeypatch):
    """`--plugin=~/mycomps.py` with HOME unset and a uid without a passwd entry (was: RuntimeError)."""
    import pwd

    def no_entry(uid):
        raise KeyError(uid)

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(ConfigError, match=r"^--plugin: cannot expand ~ in ~/mycomps.py: no home directory"):
        registry.load_plugins(["~/mycomps.py"])


def test_an_import_error_of_kames_own_is_a_bug_said_where_not_a_broken_install(scratch):
    """(review helper-262) "cannot import name X from kame" in a factory is kame's (or a plugin's)
    bug: the spot is named, not "installed but failed to import ... out of memory?"."""
    def buggy(arg=None, **kw):
        from kame import no_such_name_here

        return no_such_name_here

    registry.register("tts", "buggy", buggy, extra="tts")
    with pytest.raises(KameError, match="could not be created") as e:
        registry.create("tts", "buggy")
    said = str(e.value)
    assert "no_such_name_here" in said and "out of memory" not in said and "test_registry.py" in said, said


@pytest.mark.parametrize("spec", [r"C:\models\ckpt", "d:/models/ckpt"])
def test_a_windows_drive_path_is_told_to_take_path_first(spec):
    """A drive path reads as scheme "C": the error says how to write it (was: no hint, as for any
    spec with a ':')."""
    with pytest.raises(ConfigError, match=f"scheme '{spec[0]}' is not one of") as e:
        registry.check_spec("frontend", spec)
    assert str(e.value).endswith(f"looks like a path: write path:{spec}"), e.value
    with pytest.raises(ConfigError) as e:  # a kind without path: (a codec's file is mimi:PATH)
        registry.check_spec("codec", spec)
    assert f"put a scheme first, e.g. mimi:{spec}" in str(e.value), e.value
    registry.check_spec("frontend", f"path:{spec}")  # (what the hint says works)
    with pytest.raises(ConfigError) as e:  # a scheme's typo is no path
        registry.check_spec("frontend", "rnd:tiny")
    assert "looks like a path" not in str(e.value)


MISSING_SDK_PLUGIN = textwrap.dedent("""
    from kame import registry

    def create(arg=None, **kw):
        import kame_test_no_such_sdk  # the plugin's own dependency, not installed

    registry.register("llm", "mine", create)
""")


def test_a_plugin_component_missing_its_package_is_told_to_install_it_not_to_reinstall_kame(tmp_path, scratch):
    """(lifecycle QA) a plugin factory importing a package that is not installed names the plugin and
    the package (was: "run: reinstall kame", which cannot help); a program's factory is named too."""
    from kame.errors import MissingPackageError

    plugin = tmp_path / "mycomp.py"
    plugin.write_text(MISSING_SDK_PLUGIN)
    registry.load_plugins([str(plugin)])
    with pytest.raises(MissingPackageError) as e:
        registry.create("llm", "mine")
    said = str(e.value)
    assert said.startswith("llm 'mine' needs a package that is not installed (kame_test_no_such_sdk); install the "
                           "package the plugin ") and "mycomp.py needs (kame_test_no_such_sdk)" in said, said
    assert "reinstall kame" not in said

    def programs(arg=None, **kw):
        import kame_test_no_such_sdk

        return kame_test_no_such_sdk

    registry.register("llm", "progs", programs)
    with pytest.raises(MissingPackageError, match=r"install the package its factory .*programs .*needs "
                                                  r"\(kame_test_no_such_sdk\)") as e:
        registry.create("llm", "progs")
    assert "reinstall kame" not in str(e.value)


class _Voice:
    def __init__(self, head, **options):
        self.head, self.options = head, options

    async def synthesize(self, text):
        yield text


def _voice(arg=None, **kwargs):
    head, options = registry.spec_kwargs("tts", "voice", arg, kwargs, ("seed",))
    return _Voice(head, **options)


def test_a_spec_s_own_option_wins_over_a_caller_s_optional_default(scratch):
    """(review1 #4) `kame data synth --user-voice "espeak:en-us;seed=5"` passes seed=0 as an optional
    default: the spec's seed is used (was: "option 'seed' is also given as a keyword argument");
    a spec without it takes the caller's, and create() given both still refuses."""
    registry.register("tts", "voice", _voice)
    made = registry.create_with_optional("tts", "voice:en-us;seed=5", seed=0)
    assert (made.head, made.options) == ("en-us", {"seed": "5"})
    assert registry.create_with_optional("tts", "voice:en-us", seed=0).options == {"seed": 0}
    with pytest.raises(ConfigError, match="option 'seed' is also given as a keyword argument"):
        registry.create("tts", "voice:en-us;seed=5", seed=0)


def test_a_synth_voice_with_its_own_seed_uses_it():
    """The espeak TTS that `kame data synth` / `kame eval mtbench` create with their seed=0."""
    pytest.importorskip("espeakng_loader")
    tts = registry.create_with_optional("tts", "espeak:en-us;seed=5", seed=0)
    assert tts.seed == 5
