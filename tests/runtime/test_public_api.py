"""kame as a library: kame.runtime exports what a program embedding it needs (was: only
build_agent and TandemAgent, through a __getattr__ with no __all__; AgentAudio, Meta, FakeClock,
load_config ... were ImportErrors), kame re-exports load_config and build_agent, both lazily, and
docs/runtime.md imports from those places."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import kame
import kame.runtime

DOC = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"
NEEDED = {"load_config", "KameConfig", "build_agent", "TandemAgent", "AgentAudio", "AgentText", "Meta",
          "ErrorEvent", "CapacityError", "SessionIdError", "ReaderError", "FakeClock", "MonotonicClock",
          "Metric", "MetricsLog"}


@pytest.mark.parametrize("name", kame.runtime.__all__)
def test_every_exported_name_imports_and_is_listed(name):
    ns: dict = {}
    exec(f"from kame.runtime import {name}", ns)
    assert ns[name] is getattr(kame.runtime, name)
    assert name in dir(kame.runtime)


def test_the_runtime_exports_what_a_library_user_needs():
    from kame.config import load_config
    from kame.runtime import base, clock, engine, metrics

    assert NEEDED <= set(kame.runtime.__all__)
    assert kame.runtime.AgentAudio is base.AgentAudio and kame.runtime.FakeClock is clock.FakeClock
    assert kame.runtime.Metric is metrics.Metric and kame.runtime.build_agent is engine.build_agent
    assert kame.runtime.load_config is load_config
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        kame.runtime.nope  # noqa: B018


def test_kame_reexports_load_config_and_build_agent():
    from kame.config import load_config
    from kame.runtime.engine import build_agent

    assert kame.load_config is load_config and kame.build_agent is build_agent
    assert {"load_config", "build_agent", "__version__"} <= set(kame.__all__) <= set(dir(kame))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        kame.nope  # noqa: B018


def test_importing_kame_and_kame_runtime_stays_light():
    """The exports load on first use: torch, and the modules defining them, are not imported."""
    code = ("import sys, kame, kame.runtime; from kame import registry; "
            "print(sorted(m for m in ('torch', 'kame.runtime.engine', 'kame.config', 'kame.runtime.base') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_docs_examples_parse_and_import_from_the_public_places():
    blocks = _python_blocks(DOC.read_text())
    assert blocks, "docs/runtime.md has no python example"
    for code in blocks:
        tree = ast.parse(code)  # runnable as a script: no top-level await
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kame"):
                names = ", ".join(a.name for a in node.names)
                exec(f"from {node.module} import {names}", {})
