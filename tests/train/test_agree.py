"""kame.train.parallel.agree: when two processes each fail its check, each raises its own error
(was: every process but the lowest failed rank raised that one's echo, "train: rank 0 failed: ...",
and its own error, a second bad dialogue or a second machine's missing manifest, was said nowhere);
a process that passed echoes the first failure. The group is played by a stand-in for
torch.distributed's gather: the other process's verdict, as all_gather_object delivers it."""

from __future__ import annotations

import socket

import pytest
import torch.distributed as dist

from kame.errors import ConfigError
from kame.train.parallel import agree


def _group(monkeypatch, rank: int, other: str | None):
    """This process as ``rank`` of two; the other one's check said ``other`` (None: it passed)."""
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)

    def gather(verdicts, mine, *a, **k):
        verdicts[rank], verdicts[1 - rank] = mine, (other, socket.gethostname())

    monkeypatch.setattr(dist, "all_gather_object", gather)


def _fails(rank: int):
    def check():
        raise OSError(f"cannot read data/d{rank}/audio.wav")
    return check


@pytest.mark.parametrize("rank", [0, 1])
def test_each_failed_process_raises_its_own_error(monkeypatch, rank):
    _group(monkeypatch, rank, other=f"OSError: cannot read data/d{1 - rank}/audio.wav")
    with pytest.raises(OSError, match=f"data/d{rank}/audio.wav"):  # (rank 1 was: "train: rank 0 failed: ...")
        agree(_fails(rank))


def test_a_process_that_passed_echoes_the_first_failure(monkeypatch):
    _group(monkeypatch, 1, other="OSError: cannot read data/d0/audio.wav")
    with pytest.raises(ConfigError, match=r"^train: rank 0 failed: OSError: cannot read data/d0/audio.wav$"):
        agree(lambda: "fine")


def test_all_passed(monkeypatch):
    _group(monkeypatch, 1, other=None)
    assert agree(lambda: "fine") == "fine"
