"""The silero VADs of a process share one onnxruntime session; each keeps its own state.

(Was: every StreamingVAD built its own InferenceSession, i.e. one per STT stream and per cascade
session: ~0.1 s each and memory the allocator kept.)"""

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

from kame.backend import vad as vad_mod  # noqa: E402
from kame.backend.vad import StreamingVAD  # noqa: E402
from kame.errors import NotAvailableError  # noqa: E402

try:
    vad_mod.silero_model_path()
except NotAvailableError:  # pragma: no cover - the silero-vad wheel is not installed
    pytest.skip("no silero VAD model", allow_module_level=True)


@pytest.fixture(scope="module")
def clips():
    """Two different 24 kHz clips (espeak speech between silences), whole 80 ms frames."""
    from kame.backend.tts.espeak import EspeakTTS

    tts = EspeakTTS("en-us", rate=170)
    sil = np.zeros(12000, np.float32)
    out = []
    for text in ("Hello there, how are you today?", "Please book a table for two."):
        x = np.concatenate([sil, tts.synth(text), sil, tts.synth(text[::-1]), sil])
        out.append(x[: len(x) // 1920 * 1920])
    return out


def frames(x):
    return [x[i:i + 1920] for i in range(0, len(x), 1920)]


def test_silero_vads_share_one_session(monkeypatch):
    made = []
    real = ort.InferenceSession

    def counting(*args, **kwargs):
        made.append(args[0] if args else kwargs.get("path_or_bytes"))
        return real(*args, **kwargs)

    monkeypatch.setattr(vad_mod, "_SESSIONS", {}, raising=False)  # (none cached by other tests)
    monkeypatch.setattr(ort, "InferenceSession", counting)
    vads = [StreamingVAD() for _ in range(4)]
    assert len(made) == 1, made
    assert all(v.model.session is vads[0].model.session for v in vads)
    vads[1].reset()  # resets that VAD's state only, not the shared session
    assert vads[1].model.session is vads[0].model.session and len(made) == 1


def run_alone(x):
    vad, events, probs = StreamingVAD(), [], []
    for i, f in enumerate(frames(x)):
        events += vad.push(f, i * 0.08)
        probs += vad.probs
    return events, probs


def test_interleaved_vads_keep_their_own_state(clips):
    a, b = clips
    alone = [run_alone(a), run_alone(b)]
    assert alone[0][1] != alone[1][1]  # (different audio: different probabilities)
    assert [e.kind for e in alone[0][0]].count("start") >= 1  # (speech was heard)
    vads = [StreamingVAD(), StreamingVAD()]
    got = [([], []), ([], [])]
    fa, fb = frames(a), frames(b)
    for i in range(max(len(fa), len(fb))):  # one frame each in turn, on the shared session
        for k, fs in enumerate((fa, fb)):
            if i < len(fs):
                got[k][0].extend(vads[k].push(fs[i], i * 0.08))
                got[k][1].extend(vads[k].probs)
    assert got[0] == alone[0] and got[1] == alone[1]


def test_reset_resets_only_its_own_vad(clips):
    a, b = clips
    expected = run_alone(b)
    va, vb = StreamingVAD(), StreamingVAD()
    fa, fb, probs = frames(a), frames(b), []
    for i, f in enumerate(fb):
        if i < len(fa):
            va.push(fa[i], i * 0.08)
        if i == len(fb) // 2:
            va.reset()  # the other VAD's state is untouched
            assert not va.model.state.any() and not va.model.ctx.any()
            assert vb.model.state.any()
        vb.push(f, i * 0.08)
        probs += vb.probs
    assert probs == expected[1]
