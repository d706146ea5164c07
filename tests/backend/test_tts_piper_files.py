"""A piper voice is VOICE.onnx with VOICE.onnx.json beside it: another file given as the voice (a
recording, as if piper could copy a voice) or a model without its config is named as such before
onnx parses it (was: "DecodeError: Error parsing message with type 'onnx.ModelProto'", or a bare
FileNotFoundError)."""

from __future__ import annotations

import pytest

from kame.errors import NotAvailableError

pytest.importorskip("piper")


@pytest.mark.parametrize("seed", [None, 0])
def test_a_file_that_is_no_piper_voice_is_named(tmp_path, seed):
    from kame.backend.tts.piper import PiperTTS

    recording = tmp_path / "me.wav"
    recording.write_bytes(b"RIFF\0\0\0\0WAVE")
    with pytest.raises(NotAvailableError, match=rf"^{recording} is not a piper voice: a piper voice is a VOICE.onnx "
                                                r"model file \(with VOICE.onnx.json beside it; piper cannot copy"):
        PiperTTS(recording, seed=seed)
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"\x08\x07")
    with pytest.raises(NotAvailableError, match=rf"^piper voice {model} has no config beside it \(voice.onnx.json, "):
        PiperTTS(model, seed=seed)
