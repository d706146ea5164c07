"""What kame ships: its license as an SPDX expression with the LICENSE file (the table form is
deprecated by setuptools, and no license text shipped), an sdist with the tests, the docs and
the benchmarks the README links (was: 8 of the test files, no conftest.py, docs/ or
BENCHMARKS.md), and build outputs kept out of git."""

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_an_spdx_expression_with_its_file():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    assert project["project"]["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c) 2026 the kame authors\n")
    # (setuptools 77 is the first to read license-files and an SPDX string)
    assert "setuptools>=77" in project["build-system"]["requires"]


def test_the_sdist_takes_the_tests_docs_and_benchmarks():
    lines = {ln.strip() for ln in (ROOT / "MANIFEST.in").read_text().splitlines()}
    assert {"graft tests", "graft docs", "graft bench", "include BENCHMARKS.md LICENSE"} <= lines
    assert "global-exclude __pycache__ *.py[cod]" in lines


def test_build_outputs_are_ignored():
    if not (ROOT / ".gitignore").is_file():
        pytest.skip("not a git checkout (an unpacked sdist)")
    lines = (ROOT / ".gitignore").read_text().splitlines()
    assert "/build/" in lines and "/dist/" in lines
