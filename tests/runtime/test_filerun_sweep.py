"""`kame run`'s files (kame.runtime.filerun), as a QA sweep found them: an existing OUT.json or
OUT.png that cannot be replaced is refused before the conversation, not met after it with a
traceback (OUT.wav replaced, OUT.json not); a write that fails all the same is one KameError
naming the file; an input louder than full scale is said to be clipped in OUT.wav as the agent's
audio is; a cascade's summary has no step_rows (it has no front-end); a folder where no file can
be made is said to be so, not "No such file or directory"."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kame.audio import write_wav
from kame.cli import main
from kame.errors import ConfigError, KameError
from kame.paths import check_output_file, check_replaceable, write_replacing
from kame.runtime import engine
from kame.runtime.engine import TandemAgent

from .fakes import FakeFrameModel
from .test_filemode import _TurnAgent

F = 1920


@pytest.fixture
def tandem(monkeypatch):
    """build_agent -> a deterministic tandem (FakeFrameModel, no back-end), as test_filerun's."""

    def build(cfg, *, clock=None, metrics=None):
        return TandemAgent(cfg, clock=clock, metrics=metrics, backend=lambda s: None, token_text=lambda t: f"<{t}>",
                           frame_models=lambda b: FakeFrameModel(b))

    monkeypatch.setattr(engine, "build_agent", build)


def _run(wav: Path, out: Path, *more: str) -> int:
    return main(["run", str(wav), "-o", str(out), "--fast", "--no-png", "--tail", "0", "--set", "runtime.vad=energy",
                 "--set", "runtime.stats_interval_s=0", *more])


def _quiet(tmp_path: Path) -> Path:
    wav = tmp_path / "in.wav"
    write_wav(wav, np.zeros(5 * F, np.float32), 24000)
    return wav


def _refuse_writing(monkeypatch, path: Path, err: int = errno.EPERM) -> None:
    """os.open of ``path`` to write fails with ``err``, as for an immutable file (chattr +i), even
    to root (who else writes through any file mode)."""
    real = os.open

    def fake(p, flags, *a, **kw):
        if Path(p) == path and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(err, os.strerror(err), str(p))
        return real(p, flags, *a, **kw)

    monkeypatch.setattr(os, "open", fake)


def test_an_existing_side_file_that_cannot_be_replaced_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    # (was: the whole conversation, OUT.wav replaced, then a PermissionError traceback at OUT.json)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF1234WAVEjunk")  # never read: the check comes first
    out = tmp_path / "o.wav"
    out.with_suffix(".json").write_text("{}")
    _refuse_writing(monkeypatch, out.with_suffix(".json"))
    assert main(["run", str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"-o {out}: cannot replace {out.with_suffix('.json')}: the system does not allow changing it" in err
    assert "cannot read" not in err and "Traceback" not in err
    assert out.with_suffix(".json").read_text() == "{}"
    # OUT.png too, unless --no-png; and OUT.wav itself
    out.with_suffix(".png").write_text("png")
    monkeypatch.undo()
    _refuse_writing(monkeypatch, out.with_suffix(".png"))
    assert main(["run", str(bad), "-o", str(out)]) == 1
    assert f"cannot replace {out.with_suffix('.png')}" in capsys.readouterr().err
    assert main(["run", str(bad), "-o", str(out), "--no-png"]) == 1
    assert "cannot read" in capsys.readouterr().err  # (got as far as reading the input)
    monkeypatch.undo()
    out.write_bytes(b"wav")
    _refuse_writing(monkeypatch, out)
    assert main(["run", str(bad), "-o", str(out), "--no-png"]) == 1
    assert f"cannot replace {out}: " in capsys.readouterr().err


def test_a_read_only_side_file_is_not_refused_it_is_replaced(tmp_path, monkeypatch):
    """A file whose mode forbids writing it (root's, after a `sudo kame run`) is replaced all the
    same (renamed over, as write_wav does): not refused."""
    old = tmp_path / "o.json"
    old.write_text("old")
    old.chmod(0o444)
    _refuse_writing(monkeypatch, old, errno.EACCES)
    check_replaceable(old, "-o o.wav")  # no error
    monkeypatch.undo()
    write_replacing(old, lambda tmp: tmp.write_text("new"))
    assert old.read_text() == "new" and os.listdir(tmp_path) == ["o.json"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("chattr"), reason="chattr +i needs root")
def test_an_immutable_side_file_is_refused(tmp_path):
    side = tmp_path / "o.json"
    side.write_text("{}")
    if subprocess.run(["chattr", "+i", str(side)], capture_output=True).returncode:
        pytest.skip("this file system has no immutable flag")
    try:
        with pytest.raises(ConfigError, match=r"cannot replace .*o\.json: the system does not allow changing it"):
            check_replaceable(side, "-o o.wav")
    finally:
        subprocess.run(["chattr", "-i", str(side)], check=True)


def test_a_side_file_that_cannot_be_written_after_the_run_is_a_kame_error(tmp_path, capsys, monkeypatch, tandem):
    # (was: a PermissionError traceback; now the one line the CLI prints, naming the file)
    wav, out = _quiet(tmp_path), tmp_path / "o.wav"
    real = Path.write_text

    def write_text(self, *a, **kw):
        if self.name.startswith(".o.json"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", write_text)
    assert _run(wav, out) == 1
    err = capsys.readouterr().err
    assert f"kame: error: cannot write file {out.with_suffix('.json')}: Permission denied" in err
    assert "Traceback" not in err and not out.with_suffix(".json").exists()
    assert sorted(os.listdir(tmp_path)) == ["in.wav", "o.wav"]  # no temporary file left


def test_a_timeline_that_cannot_be_written_is_a_kame_error(tmp_path):
    from kame.runtime.timeline import plot_timeline

    rec = {"vad": [], "transcripts": [], "oracle": [], "agent_text": [], "metrics": [], "other": []}
    (tmp_path / "file").write_text("")
    png = tmp_path / "file" / "o.png"  # (a file made where its folder was, during the run)
    with pytest.raises(KameError, match=f"cannot write timeline plot {png}: File exists"):
        plot_timeline(png, np.zeros(F, np.float32), np.zeros(F, np.float32), rec, "t")
    ok = tmp_path / "o.png"
    plot_timeline(ok, np.zeros(F, np.float32), np.zeros(F, np.float32), rec, "t")
    assert ok.read_bytes()[:4] == b"\x89PNG" and sorted(os.listdir(tmp_path)) == ["file", "o.png"]


def test_an_input_louder_than_full_scale_is_said_to_be_clipped(tmp_path, capsys, tandem):
    # (was: the agent's clipped samples warned of, the user's clipped in OUT.wav silently)
    wav, out = tmp_path / "loud.wav", tmp_path / "o.wav"
    pcm = np.zeros(5 * F, np.float32)
    pcm[F:2 * F] = 3.0 * np.sin(np.arange(F) / 10)
    sf.write(wav, pcm, 24000, subtype="FLOAT")
    assert _run(wav, out) == 0
    printed = capsys.readouterr().out
    frac = json.loads(out.with_suffix(".json").read_text())["summary"]["user_clipped_fraction"]
    assert frac == pytest.approx(np.mean(np.abs(pcm) > 1.0))
    assert f"warning   {100 * frac:.2f} % of the user's samples (the input's) exceeded full scale and were " \
           f"clipped in o.wav" in printed
    assert _run(wav, out, "--tail", "3") == 0  # (the share is of the input, not of its silent tail too: was 9 %, not 60)
    assert json.loads(out.with_suffix(".json").read_text())["summary"]["user_clipped_fraction"] == pytest.approx(frac)
    capsys.readouterr()
    write_wav(wav, pcm / 3.0, 24000)  # within full scale: nothing said
    assert _run(wav, out) == 0
    assert "user's samples" not in capsys.readouterr().out
    assert json.loads(out.with_suffix(".json").read_text())["summary"]["user_clipped_fraction"] == 0.0


def test_a_cascade_summary_has_no_step_rows(tmp_path, capsys, monkeypatch, tandem):
    wav, out = _quiet(tmp_path), tmp_path / "o.wav"
    assert _run(wav, out, "--set", "runtime.max_sessions=3") == 0  # a tandem's batched front-end: 3 rows a step
    assert json.loads(out.with_suffix(".json").read_text())["summary"]["step_rows"] == 3
    monkeypatch.setattr(engine, "build_agent", lambda cfg, **kw: _TurnAgent(100, 110))  # a cascade
    assert _run(wav, out) == 0
    summary = json.loads(out.with_suffix(".json").read_text())["summary"]
    assert summary["mode"] == "cascade" and "step_rows" not in summary  # (was: 1, of no front-end)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc")
def test_a_folder_where_no_file_can_be_made_is_said_so():
    # (was: "cannot write into /proc: No such file or directory", of a folder that exists)
    with pytest.raises(ConfigError, match=r"^-o /proc/x.wav: cannot write into /proc: no file can be created "
                                          r"there$"):
        check_output_file("/proc/x.wav", suffix=".wav")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_folder_without_write_permission_says_permission_denied(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    try:
        with pytest.raises(ConfigError, match=f"cannot write into {ro}: permission denied$"):
            check_output_file(ro / "x.wav")
    finally:
        ro.chmod(0o755)


def test_demo_refuses_an_output_it_cannot_replace_before_synthesizing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "d"
    out.mkdir()
    (out / "tandem.json").write_text("{}")
    _refuse_writing(monkeypatch, out / "tandem.json")
    assert main(["demo", "--out", str(out)]) == 1  # (was: after the question and the whole cascade run)
    assert f"--out {out}: cannot replace {out / 'tandem.json'}" in capsys.readouterr().err
    assert not (out / "question.wav").exists()
    assert main(["demo", "--out", str(out), "--mode", "cascade", "--set", "runtime.nope=1"]) == 1
    assert "runtime.nope" in capsys.readouterr().err  # (the cascade's files alone are checked then)


def test_a_fast_run_is_not_said_to_have_an_stt_behind_real_time(tmp_path, monkeypatch, tandem):
    """(QA regress: --fast's virtual time outruns any STT, so "the STT fell behind real time: its
    last final ... 12.2 s late" repeated the --fast line's advice as if it were a slow machine)"""
    from kame.runtime import filerun

    monkeypatch.setattr(filerun, "stt_behind", lambda rec: pytest.fail("stt_behind judged a --fast run"))
    out = tmp_path / "o.wav"
    assert _run(_quiet(tmp_path), out) == 0  # (--fast)
    assert json.loads(out.with_suffix(".json").read_text())["summary"]["stt_behind"] is None
