"""The tandem's front-end must speak: a random preset of Kyutai STT's shape (dep_q 0, no audio out)
is refused as load_frontend(expect="frontend") refuses it (was: run, exit 0, silent agent audio and
a misleading summary), before its codec is created; and the runtime's oracle feed takes int ids only."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from kame import registry
from kame.cli import main
from kame.config import load_config
from kame.errors import CheckpointError
from kame.runtime.frontend import load_frame_models

STT_REFUSED = (r"random:stt-tiny is shaped like Kyutai STT \(dep_q 0: text out, no audio\), not a speech-to-speech "
               r"front-end; use random:tiny, random:small or random:100m")


def cfg(spec, *sets):
    return load_config(None, [f"frontend.spec={spec}", "backend.stt=none", "backend.llm=none", *sets])


def test_a_random_stt_preset_is_refused_before_its_codec_is_created(monkeypatch):
    made = []
    real = registry.create
    monkeypatch.setattr(registry, "create", lambda kind, *a, **kw: made.append(kind) or real(kind, *a, **kw))
    for codec in ("auto", "mimi:random-tiny"):
        with pytest.raises(CheckpointError, match=rf"frontend.spec = 'random:stt-tiny': {STT_REFUSED}"):
            load_frame_models(cfg("random:stt-tiny", f"codec.spec={codec}"))
    assert "codec" not in made


def test_a_random_preset_with_config_keys_loads_and_one_made_stt_shaped_is_refused():
    """random:PRESET;KEY=VALUE (was: 'unknown preset' from the runtime's own preset check)"""
    factory, info = load_frame_models(cfg("random:tiny;dim=32,context=64"))
    cfg_ = factory(1).stepper.model.cfg
    assert (cfg_.dim, cfg_.context) == (32, 64) and info["frontend"] == "random:tiny;dim=32,context=64"
    with pytest.raises(CheckpointError, match="shaped like Kyutai STT"):
        load_frame_models(cfg("random:tiny;dep_q=0"))


def test_kame_run_refuses_it(tmp_path, capsys):
    wav = tmp_path / "q.wav"
    sf.write(wav, np.zeros(4800, np.float32), 24000)
    rc = main(["run", str(wav), "-o", str(tmp_path / "st.wav"), "--fast", "--no-png", "--set",
               "frontend.spec=random:stt-tiny", "--set", "backend.llm=none", "--set", "backend.stt=none"])
    assert rc != 0 and not (tmp_path / "st.wav").exists()
    assert "random:stt-tiny is shaped like Kyutai STT" in capsys.readouterr().err


def test_the_oracle_feed_takes_int_ids_only():
    """CodecFrameModel.oracle_append (was: int() of each id: 5.9 fed as 5)."""
    factory, _ = load_frame_models(cfg("random:tiny"))
    fm = factory(1)
    with pytest.raises(TypeError, match=r"oracle token id \(row 0\) must be an int, got float 5.9"):
        fm.oracle_append(0, [5.9])
    fm.oracle_append(0, [np.int64(5)])
