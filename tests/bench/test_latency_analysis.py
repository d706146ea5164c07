"""kame bench latency's analysis of a recorded run (no models: a hand-made record)."""

import numpy as np

from kame.bench.latency import UserTurn, analyse


class _NoASR:
    def transcribe(self, pcm):
        return []


def test_oracle_lag_is_counted_once_per_prediction_at_the_fed_stage():
    # (was: both the producer's "emitted" and the session's "fed" values: two per prediction)
    def lag(value, t, stage):
        return {"name": "oracle_lag", "value": value, "t": t, "labels": {"prediction_id": 1, "stage": stage}}

    rec = {"metrics": [lag(0.59, 2.6, "emitted"), lag(0.75, 2.76, "fed"), lag(0.51, 3.5, "emitted"),
                       lag(0.67, 3.66, "fed")],
           "oracle": [], "agent_text": []}
    turn = UserTurn(dialogue=0, index=0, text="hi", voice="v", start=1.0, end=2.0, window_end=6.0)
    (r,) = analyse("tandem", [(rec, np.zeros(6 * 24000, np.float32))], [(None, [turn])], _NoASR(), 0.01)
    assert r.oracle_lag == [0.75, 0.67]


def _results():
    from kame.bench.latency import TurnResult

    turn = UserTurn(dialogue=0, index=0, text="hi", voice="v", start=1.0, end=2.0, window_end=6.0)
    # predictions restarted on partials (short lags from the newest partial word), then the final's
    lags = [[0.5, 0.6, 1.6], [0.4, 1.7], [0.5, 0.7, 0.6, 1.5]]
    return [TurnResult("tandem", turn, first_response=0.0, oracle_lag=x) for x in lags] \
        + [TurnResult("cascade", turn, first_response=x) for x in (2.0, 3.0, 4.0)]


def test_oracle_lag_end_of_turn_is_reported_apart_from_every_prediction():
    # (was: one pooled figure over every prediction, read as the answer to the turn: 0.6 here)
    from kame.bench.latency import summary

    s = summary([r for r in _results() if r.mode == "tandem"])
    assert (s["oracle_lag_end_p50"], s["oracle_lag_end_p90"], s["oracle_lag_end_n"]) == (1.6, 1.7, 3)
    assert (s["oracle_lag_p50"], s["oracle_lag_n"]) == (0.6, 9)


def test_report_names_reference_points_and_has_no_ratio(tmp_path):
    import json
    from dataclasses import asdict

    from kame.bench.latency import reanalyse

    rs = _results()
    turns = {m: [dict(asdict(r), turn=asdict(r.turn)) for r in rs if r.mode == m] for m in ("tandem", "cascade")}
    (tmp_path / "latency.json").write_text(json.dumps({"summary": {}, "slowdown": {"tandem": 1.0, "cascade": 1.0},
                                                       "components": {}, "window_s": 4.0, "turns": turns}))
    (tmp_path / "latency.md").write_text("command: x\nmachine: y\n\nkame bench latency: ...; 12 s total\n")
    md = reanalyse(tmp_path)
    assert md.startswith("command: x\nmachine: y\n") and "12 s total" in md
    assert "from the user's end of speech (the script's" in md  # the table's reference point
    assert "cascade / tandem" not in md and "oracle lag p50" not in md  # no ratio; the lag is not in the table
    assert "oracle lag, end of turn (final transcript): 1.60 / 1.70 s" in md
    assert "oracle lag, every prediction: 0.60 / 1.70 s (9 predictions" in md
    assert "end of the STT's last word" in md
    assert json.loads((tmp_path / "latency.json").read_text())["summary"]["tandem"]["oracle_lag_end_p50"] == 1.6
