"""build_agent / TandemAgent refuse a clock class and a config that is not a KameConfig at once,
with a TypeError saying what to pass (was: the FakeClock class passed the clock check and failed
in open_session with a raw TypeError; a dict or None config was an AttributeError), and they and
build_cascade_agent refuse a bad value set in code with load_config's ConfigError."""

import pytest

from kame.cascade.agent import CascadeAgent, build_cascade_agent
from kame.config import BackendConfig, FrontendConfig, KameConfig, RuntimeConfig, load_config
from kame.errors import ConfigError
from kame.runtime.clock import FakeClock, MonotonicClock
from kame.runtime.engine import TandemAgent, build_agent


@pytest.mark.parametrize("clock", [FakeClock, MonotonicClock])
def test_a_clock_class_is_refused_with_how_to_make_one(clock):
    cfg = load_config(None, ["frontend.spec=random:tiny"])
    with pytest.raises(TypeError, match=rf"clock: {clock.__name__} is a class.*pass an instance: "
                                        rf"clock={clock.__name__}\(\)"):
        build_agent(cfg, clock=clock)
    assert isinstance(build_agent(cfg, clock=clock()), TandemAgent)  # an instance is taken


@pytest.mark.parametrize("config", [{"mode": "tandem"}, None, "kame.toml"])
def test_a_config_that_is_not_a_kame_config_is_refused(config):
    for make in (build_agent, TandemAgent):
        with pytest.raises(TypeError, match=r"needs a kame config \(kame.config.KameConfig\), got .*make one with "
                                            r"kame.load_config\(\)"):
            make(config)


def _set(cfg, key: str, value):
    *sections, name = key.split(".")
    obj = cfg
    for s in sections:
        obj = getattr(obj, s)
    setattr(obj, name, value)
    return cfg


# (key, value, mode): each key's range or choices, a section's validate(), keys that only work together
BAD = [("runtime.max_input_backlog_s", -1, "tandem"), ("runtime.max_sessions", 0, "tandem"),
       ("frontend.dtype", "float64", "tandem"), ("frontend.temp", "hot", "tandem"), ("mode", "duplex", "tandem"),
       ("frontend.device", "gpu", "tandem"), ("backend.llm", "nonsense:x", "tandem"),
       ("cascade.hybrid_routing", True, "tandem"), ("cascade.max_segment_words", 1, "cascade"),
       ("backend.stt", "none", "cascade"), ("runtime.max_input_backlog_s", float("nan"), "cascade")]


@pytest.mark.parametrize("key,value,mode", BAD)
def test_a_bad_value_set_in_code_is_refused_as_load_config_refuses_it(key, value, mode):
    """A config changed in code (was: accepted; runtime.max_input_backlog_s = -1 then raised an IndexError in
    push_audio, max_sessions = 0 a ValueError of the Stepper, frontend.dtype an error naming frontend.spec)."""
    sets = {"mode": mode, "backend.llm": "none"} if key == "cascade.hybrid_routing" else {"mode": mode}
    with pytest.raises(ConfigError) as loaded:
        load_config(None, {**sets, key: value})
    makers = [build_agent, build_cascade_agent] if mode == "cascade" else [build_agent, TandemAgent]
    for make in makers:
        cfg = _set(load_config(None, sets), key, value)
        with pytest.raises(ConfigError) as built:
            make(cfg)
        assert str(built.value) == str(loaded.value)
        assert key in str(built.value)


def test_a_config_made_in_code_is_checked_and_its_values_converted():
    with pytest.raises(ConfigError, match=r"^runtime.max_input_backlog_s: must be >= 0.08, got -1.0$"):
        build_agent(KameConfig(runtime=RuntimeConfig(max_input_backlog_s=-1)))
    with pytest.raises(ConfigError, match=r"^runtime: expected the \[runtime\] section \(a kame.config.RuntimeConfig\)"):
        build_agent(_set(KameConfig(), "runtime", {"max_sessions": 2}))
    cfg = KameConfig(runtime=RuntimeConfig(max_input_backlog_s=2), frontend=FrontendConfig(temp="none"))
    assert isinstance(build_agent(cfg), TandemAgent)  # as load_config takes them: 2 -> 2.0, "none" -> None
    assert cfg.runtime.max_input_backlog_s == 2.0 and isinstance(cfg.runtime.max_input_backlog_s, float)
    assert cfg.frontend.temp is None


def test_a_cascade_s_own_components_stand_in_for_the_config_s():
    cfg = KameConfig(mode="cascade", backend=BackendConfig(stt="none"))
    with pytest.raises(ConfigError, match="backend.stt = 'none' cannot be used with mode = 'cascade'"):
        build_agent(cfg)
    from ..cascade.fakes import FakeSTT

    assert isinstance(build_agent(cfg, components={"stt": FakeSTT()}), CascadeAgent)


def test_a_value_of_a_compatible_type_set_in_code_is_converted(tmp_path):
    """A Path for a string key, a numpy integer for an integer key, a numpy float or integer for a
    number key (was: refused, "frontend.spec: expected a string, got PosixPath(...)", though
    load_frontend takes a Path and these worked before build_agent checked the values)."""
    import numpy as np

    from kame.config import validate_config

    for check in (build_agent, validate_config):
        cfg = KameConfig()
        cfg.frontend.spec = tmp_path  # e.g. OUT / "latest" after kame train
        cfg.runtime.max_sessions = np.int64(2)
        cfg.frontend.temp = np.float32(0.5)
        cfg.runtime.max_input_backlog_s = np.int32(3)
        check(cfg)
        assert (cfg.frontend.spec, cfg.runtime.max_sessions, cfg.frontend.temp, cfg.runtime.max_input_backlog_s) \
            == (str(tmp_path), 2, 0.5, 3.0)
        assert [type(v) for v in (cfg.frontend.spec, cfg.runtime.max_sessions, cfg.frontend.temp,
                                  cfg.runtime.max_input_backlog_s)] == [str, int, float, float]
    # not a bool, nor a float for an integer key (as a loaded one)
    for key, value, said in [("runtime.max_sessions", np.bool_(True), "expected an integer"),
                             ("runtime.max_sessions", True, "expected an integer"),
                             ("runtime.max_sessions", np.float64(2.0), "expected an integer"),
                             ("frontend.temp", True, "expected a number"),
                             ("frontend.temp", np.float32("nan"), "expected a finite number")]:
        with pytest.raises(ConfigError, match=rf"^{key}: {said}, got "):
            validate_config(_set(KameConfig(), key, value))
    with pytest.raises(ConfigError, match=r"^runtime.max_sessions: expected an integer, got 2.0$"):
        load_config(None, ["runtime.max_sessions=2.0"])  # (load_config's own values: as before)


def test_a_numpy_bool_set_in_code_for_a_bool_key_is_converted():
    """(was: "runtime.batched: expected true/false, got np.True_", though numpy integers and floats
    were converted); still not a number for a number key (above), nor a number for a bool key."""
    import numpy as np

    from kame.config import validate_config

    for check in (build_agent, validate_config):
        cfg = KameConfig()
        cfg.runtime.batched = np.bool_(False)
        cfg.cascade.emit_silence = (np.arange(3) > 5)[0]  # (an item of an array's comparison)
        check(cfg)
        assert (cfg.runtime.batched, cfg.cascade.emit_silence) == (False, False)
        assert type(cfg.runtime.batched) is bool and type(cfg.cascade.emit_silence) is bool
    for value in (np.int64(1), 1, "true"):
        with pytest.raises(ConfigError, match=r"^runtime.batched: expected true/false, got "):
            validate_config(_set(KameConfig(), "runtime.batched", value))
