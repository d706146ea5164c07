"""kame's error and interrupted lines go to stderr in one write, line and newline together: the
processes of a torchrun share one unbuffered stderr, and print's two writes (text, then newline)
let their lines join ("...stoppedkame: error: ...")."""

from __future__ import annotations

import sys

from kame import cli


class Writes:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_an_error_line_and_an_interrupted_line_are_one_write_each(monkeypatch):
    err = Writes()
    monkeypatch.setattr(sys, "stderr", err)
    cli._error("train: the checkpoint could not be saved (rank 0 says why): stopped")
    assert cli.said_interrupted("kame run") == 130
    assert err.writes == ["kame: error: train: the checkpoint could not be saved (rank 0 says why): stopped\n",
                          "kame run: interrupted\n"]
