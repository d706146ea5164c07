"""Streaming VAD on synthesized speech + silence (silero ONNX and webrtc)."""

import numpy as np
import pytest

from kame.backend.vad import StreamingVAD, VADConfig
from kame.errors import AudioFormatError, ConfigError

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def speech():
    """1 s silence, sentence A, 1 s silence, sentence B (espeak), 1 s silence; boundaries."""
    from kame.backend.tts.espeak import EspeakTTS

    tts = EspeakTTS("en-us", rate=170)
    a = tts.synth("Hello there, how are you today?")
    b = tts.synth("Please book a table for two.")
    sil = np.zeros(24000, np.float32)
    x = np.concatenate([sil, a, sil, b, sil])
    x = x[: len(x) // 1920 * 1920]
    # true speech extent of each clip (espeak pads a little silence around speech)
    def extent(clip, offset):
        idx = np.flatnonzero(np.abs(clip) > 0.01)
        return offset + idx[0] / 24000, offset + idx[-1] / 24000

    ea = extent(a, 1.0)
    eb = extent(b, 2.0 + len(a) / 24000)
    return x, [ea, eb]


def run(vad, x, t0=10.0):
    events, probs = [], []
    for i in range(0, len(x), 1920):
        events += vad.push(x[i:i + 1920], t0 + i / 24000)
        probs += vad.probs
    return events, probs


@pytest.mark.parametrize("backend", ["silero", "webrtc"])
def test_vad_finds_speech_boundaries(speech, backend):
    x, truth = speech
    t0 = 10.0  # frames' clock times start at 10 s: events must be on that clock
    events, probs = run(StreamingVAD(backend=backend, min_silence=0.5), x, t0)
    kinds = [e.kind for e in events]
    assert kinds == ["start", "end", "start", "end"], events
    for (s, e), (ts, te) in zip(zip(events[::2], events[1::2]), truth):
        assert abs(s.t - (t0 + ts)) < 0.25 and abs(e.t - (t0 + te)) < 0.35, (s, e, ts, te)
        assert s.detected_at >= s.t and e.detected_at >= e.t + 0.5 - 0.05  # min_silence waited
    # probabilities: high inside speech, low in the leading silence
    in_speech = [p for t, p in probs if t0 + truth[0][0] + 0.2 < t < t0 + truth[0][1] - 0.2]
    silence = [p for t, p in probs if t < t0 + 0.8]
    assert np.mean(in_speech) > 0.6 and max(silence) < 0.3


def test_vad_min_silence_merges_short_pause(speech):
    x, _ = speech
    events, _ = run(StreamingVAD(min_silence=1.5), np.concatenate([x, np.zeros(24000, np.float32)]))
    # the 1 s pause between the sentences no longer ends the speech
    assert [e.kind for e in events] == ["start", "end"]


def test_vad_reset_and_errors():
    vad = StreamingVAD()
    with pytest.raises(AudioFormatError):
        vad.push(np.zeros((1920, 2), np.float32), 0.0)
    with pytest.raises(AudioFormatError):
        vad.push(np.zeros(1920, np.int16), 0.0)
    with pytest.raises(ConfigError):
        StreamingVAD(min_silense=0.3)
    with pytest.raises(ConfigError):
        StreamingVAD(VADConfig(backend="nope"))
    assert vad.push(np.zeros(1920, np.float32), 0.0) == [] and not vad.in_speech


def test_to_16k_is_seamless_and_times_each_piece():
    """The VAD's 24 -> 16 kHz step: the pieces join into the whole signal resampled, and the time
    it gives each piece is where that piece lies on the caller's clock (no offset, no drift)."""
    from scipy.signal import resample_poly

    t = np.arange(24000 * 2) / 24000
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    vad, parts, n = StreamingVAD(backend="webrtc"), [], 0
    for i in range(0, len(x), 1920):
        y, t16 = vad.to_16k(x[i:i + 1920], 10.0 + i / 24000)
        assert t16 == pytest.approx(10.0 + n / 16000, abs=1e-9), i
        parts.append(y)
        n += len(y)
    assert len(parts[0]) == 1269 and {len(p) for p in parts[1:]} == {1280}  # 16 samples of look-ahead
    got = np.concatenate(parts)
    np.testing.assert_allclose(got, resample_poly(x.astype(np.float64), 2, 3)[:len(got)], atol=1e-5)
    spec = np.abs(np.fft.rfft(got[8000:24000]))
    assert abs(np.argmax(spec) - 1000) < 2  # still a 1 kHz tone at 16 kHz (1 Hz bins)


@pytest.mark.parametrize("backend", ["silero", "webrtc"])
def test_vad_times_do_not_depend_on_how_the_stream_is_cut(speech, backend):
    """Pieces of any length (not only 80 ms frames, not multiples of 3) give the same chunk
    probabilities at the same times and the same events as 80 ms frames."""
    x, _ = speech
    want_events, want_probs = run(StreamingVAD(backend=backend), x)
    vad, events, probs, i = StreamingVAD(backend=backend), [], [], 0
    for size in np.random.default_rng(0).integers(1, 5000, size=len(x)):
        if i >= len(x):
            break
        events += vad.push(x[i:i + size], 10.0 + i / 24000)
        probs += vad.probs
        i += size
    assert len(probs) == len(want_probs) and len(events) == len(want_events) == 4
    np.testing.assert_allclose(np.array(probs), np.array(want_probs), atol=1e-4)
    for e, w in zip(events, want_events):
        assert e.kind == w.kind and e.t == pytest.approx(w.t, abs=1e-9)


@pytest.mark.parametrize("kind", ["silero", "webrtc", "energy"])
def test_last_voice_stops_while_the_end_of_speech_is_awaited(speech, kind):
    """``last_voice`` (what barge-in counts up to) stays at the last voiced chunk while the VAD
    is still "in speech", waiting out min_silence before it reports the end."""
    from kame.runtime.worker import EnergyVAD

    x, truth = speech
    vad = EnergyVAD(min_silence=0.8) if kind == "energy" else StreamingVAD(backend=kind, min_silence=0.8)
    assert vad.last_voice is None
    end_a = 10.0 + truth[0][1]
    seen = []
    for i in range(0, len(x), 1920):
        t = 10.0 + i / 24000
        vad.push(x[i:i + 1920], t)
        if vad.in_speech and end_a + 0.3 < t < end_a + 0.6:  # inside the min_silence wait
            seen.append(vad.last_voice)
    assert seen and max(seen) == min(seen) and abs(seen[0] - end_a) < 0.3
    assert vad.last_voice > 10.0 + truth[1][1] - 0.3  # and it moves on with the next sentence


def test_running_the_file_ends_speech_that_reaches_the_end_of_the_wav(speech, tmp_path, capsys):
    """python -m kame.backend.vad IN.wav: speech ending less than min_silence before the end of the
    file (and a last part-frame) still gets its "end" (was: only "start" printed)."""
    from kame.audio import write_wav
    from kame.backend.vad import main

    x, truth = speech
    cut = int((truth[1][1] + 0.1) * 24000) + 700  # 0.1 s after the last word, not a whole frame
    write_wav(tmp_path / "q.wav", x[:cut])
    main([str(tmp_path / "q.wav")])
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["start", "end", "start", "end"], lines
    assert "after the end of the file" in lines[-1] and "after the end of the file" not in lines[1], lines
