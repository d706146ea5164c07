"""kame bench latency: dialogue timing, per-turn measurement from recorded audio, summary/table."""

import numpy as np
import pytest

from kame.backend.types import Word
from kame.bench import latency as lb
from kame.bench.latency_report import table
from kame.errors import KameError

SR = lb.SR


def tone(seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_dialogues_file_has_30_turns_with_multi_turn_dialogues():
    assert sum(len(d) for d in lb.DIALOGUES) == 30
    assert sum(1 for d in lb.DIALOGUES if len(d) > 1) >= 4
    assert all(isinstance(t, str) and t.strip() for d in lb.DIALOGUES for t in d)


def test_build_dialogues_timings(monkeypatch):
    # speech = 0.1 s of silence + a tone whose length grows with the text, so timings are known
    def fake_voices():
        return lambda engine, arg, text: np.concatenate([np.zeros(2400, np.float32), tone(0.05 * len(text))])

    monkeypatch.setattr(lb, "_voices", fake_voices)
    out = lb.build_dialogues(5, window=2.0, lead=0.5)
    assert [len(turns) for _, turns in out] == [1, 1, 1, 2]  # the 4th dialogue is cut to 2 turns
    pcm, turns = out[3]
    t0, t1 = turns
    assert t0.start == pytest.approx(0.5 + 0.1, abs=1e-3)
    assert t0.end - t0.start == pytest.approx(0.05 * len(t0.text), abs=2e-3)
    assert t1.start == pytest.approx(t0.end + 2.0 + 0.1, abs=1e-3)
    assert t0.window_end == t1.start and t1.window_end == pytest.approx(pcm.shape[0] / SR)
    # the user's speech is where the script says it is
    assert np.abs(pcm[int(t0.start * SR) + 10: int(t0.end * SR) - 10]).max() > 0.2
    assert np.abs(pcm[int(t0.end * SR) + 10: int(t1.start * SR) - 10]).max() == 0


def test_first_voiced():
    agent = np.zeros(SR * 4, np.float32)
    agent[int(2.5 * SR):int(3 * SR)] = tone(0.5)
    assert lb.first_voiced(agent, 1.0, 4.0, 0.01) == pytest.approx(2.5, abs=0.011)
    assert lb.first_voiced(agent, 1.0, 2.4, 0.01) is None
    assert lb.first_voiced(agent, 2.7, 4.0, 0.01) == pytest.approx(2.7, abs=0.011)  # already voiced


class FakeASR:
    def __init__(self, words):
        self.words, self.calls = words, 0

    def transcribe(self, pcm16k):
        self.calls += 1
        return self.words


def _turn(start=1.0, end=2.0, window_end=8.0):
    return lb.UserTurn(0, 0, "What is the capital of France?", "piper:1.0", start, end, window_end)


def _rec(agent_text=(), oracle=(), metrics=()):
    return {"agent_text": list(agent_text), "oracle": list(oracle), "metrics": list(metrics)}


def test_analyse_cascade_content_word_and_breakdown():
    ut = _turn()
    agent = np.zeros(SR * 8, np.float32)
    agent[int(4.0 * SR):int(6 * SR)] = tone(2.0)
    rec = _rec(agent_text=[{"t": 3.0, "text": "The capital "}, {"t": 3.1, "text": "of France is Paris."}],
               metrics=[{"name": "llm_ttft", "value": 0.5, "t": 3.0}, {"name": "tts_first_chunk", "value": 0.3, "t": 3.5}])
    # segment time 0 = ut.start; "the" is a stop word, "capital" is the first content word;
    # whisper puts "the" 0.05 s before the first audible sample (clamped for content latency)
    asr = FakeASR([Word("The", 2.95, 3.1), Word("capital", 3.1, 3.5), Word("Paris", 3.9, 4.2)])
    (r,) = lb.analyse("cascade", [(rec, agent)], [(None, [ut])], asr, 0.01)
    assert r.first_response == pytest.approx(2.0, abs=0.011)
    assert r.content == pytest.approx(1.0 + 3.1 - 2.0)
    assert r.content_word == "capital"
    assert r.answer == "The capital of France is Paris."
    assert r.request_delay == pytest.approx(0.5)  # 3.0 - 0.5 - end of speech 2.0
    assert r.llm_ttft == [0.5] and r.tts_first_chunk == 0.3


def test_analyse_clamps_content_to_first_response():
    ut = _turn()
    agent = np.zeros(SR * 8, np.float32)
    agent[int(3.0 * SR):int(5 * SR)] = tone(2.0)
    rec = _rec(agent_text=[{"t": 2.5, "text": "Paris."}])
    (r,) = lb.analyse("cascade", [(rec, agent)], [(None, [ut])], FakeASR([Word("Paris", 1.9, 2.3)]), 0.01)
    assert r.content == pytest.approx(r.first_response) == pytest.approx(1.0, abs=0.011)


def test_analyse_tandem_babble_is_never_content_and_silent_agent_is_not_transcribed():
    ut = _turn()
    babble = tone(8.0, 0.05)  # sounding all along, already at the end of speech
    oracle = [{"event": "reset", "prediction_id": 1, "t": 2.2},
              {"event": "append", "prediction_id": 1, "text": "Paris is the capital.", "t": 2.3},
              {"event": "reset", "prediction_id": 2, "t": 9.0}]  # outside the window
    rec = _rec(oracle=oracle, metrics=[{"name": "oracle_lag", "value": 0.4, "t": 2.4}])
    asr = FakeASR([Word("the", 2.0, 2.2), Word("mumble", 2.5, 2.9)])
    (r,) = lb.analyse("tandem", [(rec, babble)], [(None, [ut])], asr, 0.01)
    assert r.first_response == 0.0 and r.content is None and r.heard == "the mumble"
    assert r.answer == "Paris is the capital." and r.oracle_lag == [0.4]
    silent = FakeASR([Word("Paris", 2.0, 2.2)])
    (r2,) = lb.analyse("tandem", [(rec, np.zeros(SR * 8, np.float32))], [(None, [ut])], silent, 0.01)
    assert r2.first_response is None and r2.content is None and silent.calls == 0


def test_summary_and_table():
    ut = _turn()
    tandem = [lb.TurnResult("tandem", ut, first_response=0.0, oracle_lag=[0.5, 0.7]) for _ in range(3)]
    cascade = [lb.TurnResult("cascade", ut, first_response=x, content=x + 0.2) for x in (2.0, 3.0, 4.0)]
    sums = {"tandem": lb.summary(tandem), "cascade": lb.summary(cascade)}
    assert sums["cascade"]["first_response_p50"] == 3.0
    assert sums["cascade"]["content_p50"] == pytest.approx(3.2)
    assert sums["tandem"]["already_sounding_n"] == 3 and sums["tandem"]["content_n"] == 0
    text = table(sums, {"tandem": 1.0, "cascade": 1.0})
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()[2:]}
    assert "never" in rows["tandem"] and "0/3" in rows["tandem"]
    assert "3 already at end of speech" in rows["tandem"]
    assert "cascade / tandem" not in rows  # (no ratio: meaningless while the tandem babbles from the start)


def test_never_counts_in_the_percentiles():
    ut = _turn()
    # one turn in five with an audible answer: its value is not the p50, "never" is
    rs = [lb.TurnResult("tandem", ut, first_response=0.0, content=0.5 if i == 0 else None) for i in range(5)]
    s = lb.summary(rs)
    assert s["content_n"] == 1 and s["content_p50"] == float("inf") and s["content_p90"] == float("inf")
    assert "never / never" in table({"tandem": s}, {})
    rs = [lb.TurnResult("cascade", ut, first_response=x) for x in (1.0, 2.0, 3.0, None)]
    s = lb.summary(rs)
    assert s["first_response_n"] == 3 and s["first_response_p50"] == 2.0 and s["first_response_p90"] == float("inf")
    assert lb._json_num(s["first_response_p90"]) == "never" and lb._json_num(float("nan")) is None


def test_contractions_and_stop_words_are_not_content():
    assert lb._content_words("I'm sure it's Paris, and I'll say 42.") == {"sure", "paris", "say", "42"}


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/stat"), reason="reads /proc")
def test_ctrl_c_in_a_dialogue_exits_without_waiting_for_the_back_end_childs_teardown(tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) while a dialogue's reply is
    under way: the bench exits with 130 and leaves no child process, and it does not wait for
    its back-end child's interpreter teardown (the embedded LLM's child tore down torch: 2-5 s,
    and Ctrl-C took about 7 s to exit; childproc's children now skip it)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from .latency_interrupt import TEARDOWN_S

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, KAME_TEST_FOLDER=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", "from tests.cascade.latency_interrupt import run; run()"],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        requests = tmp_path / "requests"
        deadline = time.monotonic() + 120
        while not (requests.exists() and len(requests.read_text().splitlines()) >= 2):  # warm-up + the reply
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-2000:]
            time.sleep(0.05)
        child = int((tmp_path / "child.pid").read_text())
        assert _running(child)
        os.killpg(proc.pid, signal.SIGINT)
        out = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    time.sleep(TEARDOWN_S + 0.5)  # long enough for the child's teardown to have ended, had it run
    assert not _running(child)
    assert not (tmp_path / "left").exists(), "the back-end child tore its interpreter down"


def test_lay_out_turns_gap_tail_and_silence():
    # (shared with kame eval mtbench: no tail after the last turn there, and a silent turn refused)
    pcm, turns = lb.lay_out_turns([tone(0.5), np.concatenate([np.zeros(2400, np.float32), tone(0.3)])], ["a", "b"],
                                  1.0, lead=0.5)
    assert [t.text for t in turns] == ["a", "b"] and turns[0].start == pytest.approx(0.5, abs=1e-3)
    assert turns[1].start == pytest.approx(turns[0].end + 1.0 + 0.1, abs=1e-3)
    assert turns[0].window_end == turns[1].start and turns[1].window_end == pytest.approx(pcm.shape[0] / SR)
    assert turns[1].end == pytest.approx(pcm.shape[0] / SR)  # tail 0: the track ends with the speech
    with pytest.raises(KameError, match="no audible speech for 'hush'"):
        lb.lay_out_turns([np.zeros(2400, np.float32)], ["hush"], 1.0, audible=True)
