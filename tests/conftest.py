"""Test-wide settings: one torch thread, deterministic seeds (onnxruntime too: piper), no torch.compile (moshi)."""

import os
import random
import signal

os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

# The Ctrl-C tests press Ctrl-C (SIGINT), in this process and in the commands they start. A test
# run started as a background job (`cmd &` in a script) inherits an ignored SIGINT, which kame
# leaves ignored on purpose and a child process inherits: give Python's own handler back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


MAX_WORKERS = 4  # `-n auto`: each worker holds torch, models and the back-end children its tests start


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`pytest -n auto` (pytest-xdist, the README's test command): one worker per usable core, at most
    MAX_WORKERS (xdist's PYTEST_XDIST_AUTO_NUM_WORKERS, where set, decides instead)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def pytest_configure(config):
    # `-n N` without --dist (xdist's default "load" then): each test file stays in one worker, so its
    # module fixtures (a model load, a fitted codec) are made once, not once per worker
    given = [*map(str, config.invocation_params.args), *os.environ.get("PYTEST_ADDOPTS", "").split()]
    if getattr(config.option, "dist", None) == "load" and not any(a.startswith(("--dist", "-d")) for a in given):
        config.option.dist = "loadfile"


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    try:  # piper samples its noise inside the ONNX graph, from a session seeded at creation
        import onnxruntime
    except ImportError:
        pass
    else:
        onnxruntime.set_seed(0)
    yield


@pytest.fixture
def scratch():
    """kame's component registry as it was before the test: schemes a test added removed, built-ins
    it replaced restored, plugins it loaded forgotten."""
    from kame import registry

    registry.schemes("llm")  # the built-in table first
    before = {kind: dict(entries) for kind, entries in registry._ENTRIES.items()}
    plugins = set(registry._PLUGINS)
    yield
    for kind, entries in registry._ENTRIES.items():
        entries.clear()
        entries.update(before.get(kind, {}))
    registry._PLUGINS.intersection_update(plugins)
