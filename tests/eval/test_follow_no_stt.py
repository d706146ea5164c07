"""`kame eval follow` without the `stt` extra (faster-whisper): kame's one-line error naming the
extra and --no-asr (was: "install the bench extra", an extra that does not exist)."""

import sys

from kame.cli import main

from ..train.test_finetune import _data


def test_follow_without_whisper_names_the_stt_extra_and_no_asr(tmp_path, capsys, monkeypatch, fake_codec):
    manifest = _data(tmp_path / "data", n=1, T=24)
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # as if the stt extra were not installed
    assert main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "fake", "--temp", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kame: error: eval follow: whisper STT needs faster-whisper: ") and err.count("\n") == 1, err
    assert "pip install 'kame-tandem[stt]'" in err and "or --no-asr" in err and "bench extra" not in err
