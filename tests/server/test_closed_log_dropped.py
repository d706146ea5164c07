"""The server log's "session closed" line gives the session's total input dropped, as the
client's final "stats" does: the session's own backlog drops plus the audio the server dropped
undecoded past the client's budget (was: the session's own counters replaced the forwarded
total, and the log line left out the server's drops)."""

from __future__ import annotations

import asyncio
import logging
import re

from kame.runtime.base import Meta
from kame.server import ops
from kame.server.client import chat

from .conftest import running_server, tone
from .test_client_final_stats import TotalsAgent, TotalsSession


class OwnStats:
    """A kame session's counters (``session.stats.to_json()``): its own drops only."""

    def __init__(self, session):
        self.session = session

    def to_json(self):
        frames = self.session.frames
        return {"frames": frames, "missed_deadlines": 0, "dropped_input_s": round(0.01 * frames, 3)}


class CountingSession(TotalsSession):
    """test_client_final_stats' session, with counters of its own as kame's sessions have (what the
    server's "session closed" line reads), its "stats" Meta made of them."""

    def __init__(self, sid):
        super().__init__(sid)
        self.stats = OwnStats(self)

    def meta(self, final):
        return Meta({"type": "stats", "session": self.id, "final": final, **self.stats.to_json()})


class CountingAgent(TotalsAgent):
    async def open_session(self, session_id=None):
        self.sessions.append(CountingSession(f"d{len(self.sessions) + 1}"))
        return self.sessions[-1]


async def test_the_closed_line_counts_the_input_the_server_dropped(caplog):
    caplog.set_level(logging.INFO, logger="kame.server")
    agent = CountingAgent()
    async with running_server(agent, audio_burst_s=0.5) as (url, _):
        res = await asyncio.wait_for(chat(url, tone(4.0), pcm_mode=True, realtime=False, tail_s=0.2), 20)
        for _ in range(200):
            if "closed after" in caplog.text:
                break
            await asyncio.sleep(0.01)
    (s,) = agent.sessions
    own = s.stats.to_json()["dropped_input_s"]
    assert res.dropped_input_s > own + 2.0  # (4 s sent at once, a 0.5 s burst: the server dropped most)
    (line,) = [r.getMessage() for r in caplog.records if " closed after " in r.getMessage()]
    m = re.search(r"input dropped (\d+\.\d\d) s", line)
    assert m and m.group(1) == f"{res.dropped_input_s:.2f}", line  # (was: the session's own, 0.01 per frame)


def test_session_summary_adds_the_input_the_server_dropped_to_the_sessions_own():
    view = ops.SessionView()
    view.note({"type": "stats", "frames": 5, "dropped_input_s": 8.913})  # (merged: with the server's drops)
    s = CountingSession("x")
    s.frames = 13
    assert ops.session_summary(s, view) == "frames 13, missed deadlines 0, input dropped 0.13 s"  # (its own)
    assert ops.session_summary(s, view, 8.78) == "frames 13, missed deadlines 0, input dropped 8.91 s"
    assert ops.session_summary(object(), view, 8.78).endswith("input dropped 8.91 s")  # (no own stats: the Meta's)
    assert ops.session_summary(object(), ops.SessionView()) == ""
