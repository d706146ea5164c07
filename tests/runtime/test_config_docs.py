"""docs/runtime.md's config block lists every backend.* key (the re-prediction policy's keys were
missing from it, as from the config)."""

import dataclasses
import re
from pathlib import Path

from kame.config import BackendConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"


def documented_backend_keys() -> set[str]:
    """The keys of the [backend] table of the doc's TOML block, commented-out ones ("# key = ...") too."""
    block = DOC.read_text().split("```toml", 1)[1].split("```", 1)[0]
    section = block.split("\n[backend]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^(?:# )?([a-z_]+) += ", section, flags=re.M))


def test_the_config_block_lists_every_backend_key():
    assert documented_backend_keys() == {f.name for f in dataclasses.fields(BackendConfig)}
