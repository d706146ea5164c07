"""The refusal of a session past runtime.max_sessions, one wording for the tandem and the cascade
(kame.runtime.engine.sessions_full): "the only session is in use" for one (was: "all 1 sessions
are in use", lifecycle QA)."""

from __future__ import annotations

import pytest

from kame.runtime.base import CapacityError
from kame.runtime.engine import sessions_full

from .test_engine import make_agent


def test_the_wording_for_one_and_for_several():
    assert str(sessions_full(1)) == "the only session is in use (runtime.max_sessions)"
    assert str(sessions_full(4)) == "all 4 sessions are in use (runtime.max_sessions)"
    assert isinstance(sessions_full(1), CapacityError)


@pytest.mark.parametrize("n, said", [(1, "the only session is in use"), (2, "all 2 sessions are in use")])
async def test_the_tandem_says_it(n, said):
    agent, _, _ = make_agent(max_sessions=n)
    await agent.start()
    opened = [await agent.open_session() for _ in range(n)]
    with pytest.raises(CapacityError, match=said):
        await agent.open_session()
    for s in opened:
        await s.close()
    await agent.stop()
