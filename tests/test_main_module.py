"""`python -m kame` is the kame command (was: "No module named kame.__main__")."""

import subprocess
import sys

import kame


def test_python_dash_m_kame_runs_the_cli():
    p = subprocess.run([sys.executable, "-m", "kame", "--version"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"kame {kame.__version__}"
