"""The command line and config surface, from a QA sweep: a mistyped option after a subcommand is
said with that subcommand's usage; kame serve --agent echo refuses --set keys it would ignore
(and warns of a config file's), and refuses --host "" as server.host=""; a misspelled attribute
set in code on a config section is refused by validate_config as a file's unknown key is."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import pickle

import pytest

from kame.cli import main
from kame.config import KameConfig, load_config, validate_config
from kame.errors import ConfigError


# ---------------------------------------------------------------------------- unrecognized options
@pytest.mark.parametrize("argv, prog, rest", [
    (["run", "x.wav", "-o", "y.wav", "--tial", "3"], "kame run", "--tial 3"),  # (was: kame's usage, `kame: error`)
    (["-v", "run", "x.wav", "-o", "y.wav", "--bogus"], "kame run", "--bogus"),
    (["bench", "sessions", "--set", "x=1"], "kame bench sessions", "--set x=1"),
    (["bench", "--bogus", "step"], "kame bench", "--bogus"),  # (before the command: its group's)
    (["--bogus", "run", "x.wav", "-o", "y.wav"], "kame", "--bogus"),  # (before the group: the top level's)
    (["--plugin", "m.py", "--bogus"], "kame", "--bogus"),
    (["run", "-o", "y.wav", "x.wav", "run"], "kame run", "run"),  # (a stray word that is the command's name:
    (["bench", "step", "step"], "kame bench step", "step"),       # was the top level's or the group's)
])
def test_an_unrecognized_option_is_said_by_the_parser_it_was_given_to(capsys, argv, prog, rest):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {prog} [-h]") and err.endswith(f"\n{prog}: error: unrecognized arguments: {rest}\n")


# ---------------------------------------------------------------------------- kame serve
def _build(argv):
    from kame.server.app import _build, add_arguments

    parser = argparse.ArgumentParser(prog="kame serve")
    add_arguments(parser)
    return _build(parser.parse_args(argv))


@pytest.mark.parametrize("key", ["runtime.max_sessions=1", "frontend.seed=5", " mode=cascade"])
def test_the_echo_agent_refuses_set_keys_it_would_ignore(key):
    # (was: served, /api/health reporting the echo agent's 16 sessions for runtime.max_sessions=1)
    with pytest.raises(ConfigError, match=rf"^--set {key}: the echo agent takes only server\.\* keys; give --agent "
                                          r"config to serve the configured agent \(the echo agent's sessions: "
                                          r"--max-sessions\)$"):
        _build(["--agent", "echo", "--set", "server.port=0", "--set", key])
    with pytest.raises(ConfigError, match=r"unknown config key 'runtime.max_sesions' .*; did you mean "
                                          r"runtime.max_sessions\?"):  # (a typo: said as a typo)
        _build(["--agent", "echo", "--set", "runtime.max_sesions=1"])
    assert _build(["--agent", "echo", "--set", "server.port=9123"])[1].port == 9123


def test_the_echo_agent_warns_of_a_config_files_other_keys(tmp_path, capsys):
    f = tmp_path / "kame.toml"
    f.write_text('[runtime]\nmax_sessions = 2\n[backend]\nllm = "none"\n[server]\nport = 9124\n')
    agent, cfg = _build(["--agent", "echo", "--config", str(f)])
    assert cfg.port == 9124 and agent.max_sessions == 16
    assert capsys.readouterr().err == (f"warning: the echo agent (no model) uses only the [server] section of {f}; "
                                       f"not used: backend.llm, runtime.max_sessions\n")
    f.write_text("[server]\nport = 9124\n")
    _build(["--agent", "echo", "--config", str(f)])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_host_is_refused_as_server_host_is(host):
    said = r"--host: empty; give the address to listen on, e.g. 127.0.0.1 \(this machine only, the default\)"
    with pytest.raises(ConfigError, match=said):  # (was: 127.0.0.1 served)
        _build(["--agent", "echo", "--host", host])
    with pytest.raises(ConfigError, match=said.replace("--host", "server.host")):
        load_config(None, [f"server.host='{host}'"])
    assert _build(["--agent", "echo", "--host", "0.0.0.0", "--token", "t"])[1].host == "0.0.0.0"


# ---------------------------------------------------------------------------- validate_config
@pytest.mark.parametrize("section, typo, meant", [
    ("runtime", "max_sesions", "max_sessions"), ("backend", "llm_temprature", "llm_temperature"),
    ("server", "prot", "port"), (None, "mod", "mode"), ("cascade", "xyz", None),
])
def test_a_misspelled_key_set_in_code_is_refused(section, typo, meant):
    cfg = KameConfig()
    setattr(getattr(cfg, section) if section else cfg, typo, 8)  # (was: accepted, the default kept)
    path = f"{section}.{typo}" if section else typo
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    said = str(e.value)
    assert said.startswith(f"unknown config key {path!r} (known here: ")
    assert said.endswith(f"; did you mean {path.rpartition('.')[0] + '.' if section else ''}{meant}?" if meant
                         else ")")
    with pytest.raises(ConfigError) as in_file:  # the same error as a file's or a --set's
        load_config(None, [f"{path}=8"])
    assert str(in_file.value) == said


def test_a_loaded_config_and_its_copies_still_pass():
    cfg = load_config(None, ["runtime.max_sessions=3"])  # (it carries _sources: no key)
    for c in (cfg, copy.copy(cfg), copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg)),
              dataclasses.replace(cfg, mode="tandem")):
        assert validate_config(c).runtime.max_sessions == 3


@pytest.mark.parametrize("path, meant", [
    ("server.max_sessions", "server.max_session_s or runtime.max_sessions"),  # (was: server.max_session_s alone,
    ("max_sessions", "runtime.max_sessions"), ("runtime.host", "server.host"),  # seconds a session may last)
    ("backend.temperature", "backend.llm_temperature or cascade.temperature")])  # (r5: not cascade's alone)
def test_a_key_of_another_section_is_named_besides_a_near_spelling(path, meant):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{path}=2"])
    assert str(e.value).endswith(f"; did you mean {meant}?")
