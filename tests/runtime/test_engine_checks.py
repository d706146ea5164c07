"""build_agent / TandemAgent refuse a clock class and a config that is not a KameConfig at once,
with a TypeError saying what to pass (was: the FakeClock class passed the clock check and failed
in open_session with a raw TypeError; a dict or None config was an AttributeError)."""

import pytest

from kame.config import load_config
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
