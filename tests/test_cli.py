"""kame.cli: the command line's own behaviour (the commands are tested in their areas)."""

import errno
import io
import sys

import pytest

from kame import cli
from kame.cli import main


def test_a_command_group_alone_prints_its_own_subcommands(capsys):
    """`kame codec` with no subcommand (was: the top-level help, listing demo/run/serve...)."""
    assert main(["codec"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: kame codec") and "roundtrip" in out and "fit" in out and "serve" not in out
    assert main([]) == 2 and "serve" in capsys.readouterr().out


def test_help_names_the_environment_variables(capsys):
    """(deployment hunt: only KAME_AUTH_TOKEN and KAME_PLUGINS were told, in option texts)"""
    import pytest

    from kame.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("KAME_AUTH_TOKEN", "KAME_PLUGINS", "KAME_CACHE", "HF_HUB_OFFLINE", "OPENAI_API_KEY",
                 "OPENAI_BASE_URL"):
        assert name in out, name


def test_ctrl_c_while_kame_starts_exits_130_without_a_traceback(monkeypatch):
    # (building the parser imports the command's module, a second or more on a busy machine; a Ctrl-C
    # then printed a 30-line traceback: the KeyboardInterrupt was outside main's try)
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_build_parser", interrupted)
    try:
        status = cli.main(["run", "in.wav", "-o", "out.wav"])
    except KeyboardInterrupt:  # (caught here: left alone it would stop the whole test run)
        raise AssertionError("the Ctrl-C went past kame's main (a traceback for the user)") from None
    assert status == 130


def _roundtrip(tmp_path, out_name="r.wav", stdout=None, **env):
    """`python -m kame codec roundtrip` of a 0.1 s wav (the quickest command that prints)."""
    import os
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "t.wav", np.zeros(2400, dtype="float32"), 24000)
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "PYTHONIOENCODING")}
    proc = subprocess.run([sys.executable, "-m", "kame", "codec", "roundtrip", "t.wav", "-o", out_name],
                          cwd=tmp_path, env={**environ, **env}, stdout=stdout, stderr=subprocess.PIPE,
                          timeout=60)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_full_stdout_is_one_line_and_status_1(tmp_path, unbuffered):
    """`kame ... > /dev/full` (was: an OSError traceback from the command's print, or Python's
    "Exception ignored" at its last flush); the output file is written whole."""
    import soundfile as sf

    with open("/dev/full", "w") as full:
        status, err = _roundtrip(tmp_path, stdout=full, PYTHONUNBUFFERED=unbuffered)
    assert status == 1 and "Traceback" not in err and "Exception ignored" not in err
    assert err.strip().splitlines()[-1] == "kame: error: cannot write to standard output: No space left on device"
    assert sf.info(tmp_path / "r.wav").frames > 0


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_closed_pipe_on_stdout_is_a_quiet_exit(tmp_path, unbuffered):
    """`kame ... | head -n 0` (was: a BrokenPipeError traceback): status 141, as a shell gives a
    program SIGPIPE ended, nothing on stderr."""
    import os

    r, w = os.pipe()
    os.close(r)  # the reader is gone
    try:
        status, err = _roundtrip(tmp_path, stdout=w, PYTHONUNBUFFERED=unbuffered)
    finally:
        os.close(w)
    assert status == 141 and err == ""
    assert (tmp_path / "r.wav").is_file()


def test_an_ascii_stdout_does_not_fail_on_unicode(tmp_path):
    """PYTHONIOENCODING=ascii and a Unicode file name (was: a UnicodeEncodeError after the work)."""
    import subprocess

    status, err = _roundtrip(tmp_path, out_name="ré✓.wav", stdout=subprocess.DEVNULL, PYTHONIOENCODING="ascii")
    assert status == 0 and "Traceback" not in err
    assert (tmp_path / "ré✓.wav").is_file()


def test_an_ascii_stdout_gets_backslash_escapes(capsys, monkeypatch):
    """(in-process: what main makes of a strict stream)"""
    import io
    import sys

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", stream)
    saved = cli._mark_streams()
    try:
        print("café ✓")
        sys.stdout.flush()
    finally:
        sys.stdout, sys.stderr = saved
    assert raw.getvalue() == b"caf\\xe9 \\u2713\n"


class _BrokenOnFlush(io.StringIO):
    """stdout as a closed pipe shows it: the write is buffered, the flush fails."""

    errors = "strict"

    def flush(self):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_a_failing_flush_does_not_hide_the_commands_own_error_or_status(monkeypatch):
    """(review helper-262) main's last flush of a closed stdout replaced a command's own exception
    (a kame bug's traceback never shown: 141) and its status (130 became 141)."""
    import kame.cli as cli

    def bug(argv):
        raise RuntimeError("a kame bug")

    monkeypatch.setattr(sys, "stdout", _BrokenOnFlush())
    monkeypatch.setattr(cli, "_main", bug)
    with pytest.raises(RuntimeError, match="a kame bug"):
        cli.main([])
    monkeypatch.setattr(cli, "_main", lambda argv: 130)
    assert cli.main([]) == 130
    monkeypatch.setattr(cli, "_main", lambda argv: 0)
    assert cli.main([]) == 141  # (a command that went well: the closed pipe is said as ever)


def _kame(*argv, stdout):
    """`python -m kame ARGV` with ``stdout``: its status and stderr."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "kame", *argv], stdout=stdout, stderr=subprocess.PIPE, timeout=60)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["--version"]])
def test_help_and_version_to_a_full_stdout_are_one_line_and_status_1(argv):
    """`kame --help > /dev/full` (was: status 0, argparse swallowed the write error), as any command's output."""
    with open("/dev/full", "w") as full:
        status, err = _kame(*argv, stdout=full)
    assert (status, err) == (1, "kame: error: cannot write to standard output: No space left on device\n")


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_to_a_closed_pipe_are_a_quiet_exit(argv):
    """`kame --help | head -n 0`: 141, nothing on stderr, as any command's output."""
    import os

    r, w = os.pipe()
    os.close(r)
    try:
        status, err = _kame(*argv, stdout=w)
    finally:
        os.close(w)
    assert (status, err) == (141, "")


class _FullOnWrite(io.StringIO):
    """stdout as a full disk shows it when the write itself reaches the file (a long help)."""

    errors = "strict"

    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_help_whose_write_fails_at_once_is_said(monkeypatch, capsys):
    """(in-process: argparse's _print_message swallowed the OSError; only the flush was left to fail)"""
    monkeypatch.setattr(sys, "stdout", _FullOnWrite())
    assert cli.main(["--help"]) == 1
    assert capsys.readouterr().err == "kame: error: cannot write to standard output: No space left on device\n"
    assert cli.main([]) == 2  # (no command: a usage error, its status stays)


def test_torch_logs_below_warning_are_quiet_without_v():
    """torch's exit hook logs "FakeTensor cache stats: ..." at INFO; its import sets its loggers to
    WARNING, but one cut short (Ctrl-C during the front-end's load) left them at the root's INFO, and
    those lines came after kame's last one. kame's logging set-up quiets them itself (unless -v)."""
    import logging

    names = ("torch", "torch._subclasses.fake_tensor")
    saved = {n: logging.getLogger(n).level for n in ("", *names)}
    try:
        logging.getLogger().setLevel(logging.INFO)  # (main's basicConfig: a no-op here, pytest's handlers are set)
        for n in names:
            logging.getLogger(n).setLevel(logging.NOTSET)  # (as an interrupted torch import leaves them)
        assert main([]) == 2
        for n in names:
            assert logging.getLogger(n).getEffectiveLevel() >= logging.WARNING, n
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def test_plugin_after_the_command_is_taken_as_before_it_in_the_order_given(tmp_path):
    """`kame run ... --plugin x.py` (was: "unrecognized arguments: --plugin x.py"; -v was taken there)."""
    seen = tmp_path / "seen.txt"
    plugins = []
    for name in ("fx11_first", "fx11_second", "fx11_third"):
        (tmp_path / f"{name}.py").write_text(f"with open({str(seen)!r}, 'a') as f:\n    f.write('{name} ')\n")
        plugins.append(str(tmp_path / f"{name}.py"))
    argv = ["--plugin", plugins[0], "run", str(tmp_path / "missing.wav"), "--plugin", plugins[1], "-o",
            str(tmp_path / "out.wav"), "--plugin", plugins[2]]
    assert cli._build_parser(argv)[0].parse_args(argv).plugin == plugins
    assert main(argv) == 1  # (the missing input, said after the plugins were loaded)
    assert seen.read_text() == "fx11_first fx11_second fx11_third "
