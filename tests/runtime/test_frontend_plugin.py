"""A front-end registered by a plugin (its own scheme, or a built-in one replaced with
replace=True) is what `kame run` loads: the config check takes its spec, the runtime creates it
through the registry with load_frontend's keyword arguments and checks it as kame's own (codec
fit, what the factory returns). Tiny random front-ends, made here."""

import pytest

from kame import registry
from kame.config import load_config
from kame.errors import ConfigError, KameError
from kame.model.loaders import Frontend, load_frontend
from kame.runtime.frontend import load_frame_models

ALONE = ["backend.stt=none", "backend.llm=none"]


@pytest.fixture
def scratch():
    """The registry as it was before the test: schemes added removed, built-ins replaced restored."""
    registry.schemes("frontend")  # the built-in table first
    before = {kind: dict(entries) for kind, entries in registry._ENTRIES.items()}
    yield
    for kind, entries in registry._ENTRIES.items():
        entries.clear()
        entries.update(before.get(kind, {}))


def test_a_plugin_scheme_is_loaded_through_its_factory(scratch):
    calls = []

    def create(arg=None, **kw):
        calls.append((arg, sorted(kw)))
        return Frontend(*load_frontend("random:tiny", **kw))

    registry.register("frontend", "myfe", create)
    # (was: "frontend.spec: 'myfe:abc' is not a front-end spec", though registry.create took it)
    cfg = load_config(None, ["frontend.spec=myfe:abc", "frontend.seed=3", *ALONE])
    factory, info = load_frame_models(cfg)
    assert calls and calls[0][0] == "abc"
    assert {"device", "dtype", "seed", "oracle", "expect", "weights"} <= set(calls[0][1])
    assert info["frontend_random"] and info["codec"] == "embedded" and info["oracle_stream"] == "random"
    assert factory(1).stepper.batch_size == 1


def test_a_built_in_scheme_replaced_is_used(scratch):
    def create(arg=None, **kw):
        raise RuntimeError("PLUGIN FRONTEND USED")

    registry.register("frontend", "random", create, replace=True)
    # (was: ignored, kame's own random:tiny loaded)
    with pytest.raises(KameError, match=r"frontend.spec = 'random:tiny': .*PLUGIN FRONTEND USED"):
        load_frame_models(load_config(None, ["frontend.spec=random:tiny", *ALONE]))


def test_a_plugin_front_end_gets_the_codec_fit_check(scratch):
    registry.register("frontend", "myfe", lambda arg=None, **kw: Frontend(*load_frontend("random:tiny", card=1024, **kw)))
    with pytest.raises(ConfigError, match=r"codec.spec = 'auto': codec 'embedded' has 2048 codes per codebook, the "
                                          r"front-end 'myfe' expects 1024"):
        load_frame_models(load_config(None, ["frontend.spec=myfe", *ALONE]))


def test_a_factory_that_returns_no_front_end_is_named(scratch):
    registry.register("frontend", "myfe", lambda arg=None, **kw: object())
    with pytest.raises(ConfigError, match=r"frontend 'myfe': its factory returned object, not a front-end: return "
                                          r"kame.model.loaders.Frontend\(model, info\)"):
        load_frame_models(load_config(None, ["frontend.spec=myfe", *ALONE]))


def test_an_unknown_scheme_is_still_refused_at_config_load():
    with pytest.raises(ConfigError, match=r"frontend.spec: 'nofe:abc' is not a front-end spec"):
        load_config(None, ["frontend.spec=nofe:abc"])
