"""What kame ships: its license as an SPDX expression with the LICENSE file (the table form is
deprecated by setuptools, and no license text shipped), an sdist with the tests, the docs and
the benchmarks the README links (was: 8 of the test files, no conftest.py, docs/ or
BENCHMARKS.md), a wheel with the package's data and no tests, and build outputs kept out of git.

The sdist and the wheel are built for real (setuptools.build_meta, offline, in a subprocess) from
a copy of the checkout's files (git's: tracked, and new ones not ignored), so the build's own
outputs (src/kame_tandem.egg-info, build/) go to a temporary folder, not the checkout."""

import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
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


def _checkout_files() -> list[str]:
    """The checkout's files as a fresh clone with the work in progress has them (tracked, and new
    ones git does not ignore), or skip: not a git checkout (an unpacked sdist)."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout (an unpacked sdist)")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]  # (not one deleted in the work tree)


def _build(tree: Path, out: Path) -> tuple[list[str], list[str]]:
    """Build the sdist and the wheel of ``tree`` into ``out`` (setuptools.build_meta, as pip's
    build front-end calls it, without its isolated environment: no network); the files in each.
    (``out`` is read from argv first: build_meta rewrites sys.argv for each build.)"""
    code = ("import sys; from setuptools import build_meta as b; "
            "out = sys.argv[1]; s = b.build_sdist(out); w = b.build_wheel(out); print('built', s, w)")
    run = subprocess.run([sys.executable, "-c", code, str(out)], cwd=tree, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    _, sdist, wheel = [ln for ln in run.stdout.splitlines() if ln.startswith("built ")][-1].split()
    sdist, wheel = out / sdist, out / wheel
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]  # kame_tandem-0.1.0/...
        in_sdist = [n.removeprefix(top + "/") for n in tar.getnames() if tar.getmember(n).isfile()]
    with zipfile.ZipFile(wheel) as whl:
        in_wheel = whl.namelist()
    return in_sdist, in_wheel


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[list[str], set[str], list[str]]:
    """(the checkout's files, the sdist's, the wheel's), built from a copy of the checkout with a
    recording where `kame bench latency --save-wavs` writes them (bench/results: left out)."""
    files = _checkout_files()
    tree, out = tmp_path_factory.mktemp("tree"), tmp_path_factory.mktemp("dist")
    for f in files:
        (tree / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, tree / f)
    (tree / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (tree / "bench" / "results" / "take.wav").write_bytes(b"RIFF")
    in_sdist, in_wheel = _build(tree, out)
    return files, set(in_sdist), in_wheel


def test_the_sdist_takes_the_tests_docs_benchmarks_and_scripts(built):
    files, in_sdist, _ = built
    shipped = [f for f in files if f.split("/")[0] in ("tests", "docs", "bench", "scripts")
               and not f.endswith((".wav", ".pyc"))]
    assert {"tests/conftest.py", "docs/protocol.md", "BENCHMARKS.md", "LICENSE"} <= in_sdist
    assert any(f.startswith("bench/") for f in shipped) and any(f.startswith("scripts/") for f in shipped)
    assert sorted(set(shipped) - in_sdist) == []  # every one of them (was: 8 of the test files)
    assert [n for n in in_sdist if n.endswith(".wav") or "__pycache__" in n] == []


def test_the_wheel_has_the_package_data_and_no_tests(built):
    files, _, in_wheel = built
    data = [f.removeprefix("src/") for f in files if f.startswith(("src/kame/assets/", "src/kame/server/static/"))]
    assert "kame/server/static/index.html" in data and any(f.startswith("kame/assets/") for f in data)
    assert sorted(set(data) - set(in_wheel)) == []
    assert [n for n in in_wheel if n.startswith(("tests/", "docs/", "bench/", "scripts/"))] == []


def test_build_outputs_are_ignored():
    if not (ROOT / ".gitignore").is_file():
        pytest.skip("not a git checkout (an unpacked sdist)")
    lines = (ROOT / ".gitignore").read_text().splitlines()
    assert "/build/" in lines and "/dist/" in lines
