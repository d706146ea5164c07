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
