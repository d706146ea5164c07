"""kame.model.tensorfiles.check_safetensors: read_safetensors' checks (name, there, a file, its
header, its dtypes) without reading a tensor, for a command's up-front check (kame bench
sessions --codec mimi:FILE) and for read_safetensors itself: one set of words for both."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from kame.errors import CheckpointError
from kame.model.tensorfiles import check_safetensors, read_safetensors


def test_check_safetensors_says_what_read_safetensors_says(tmp_path):
    whole = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(4)}, str(whole))
    assert check_safetensors(whole, "Mimi checkpoint") is None
    misnamed = tmp_path / "w.bin"
    misnamed.write_bytes(whole.read_bytes())
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole.read_bytes()[:20])
    for bad, said in ((misnamed, f"{misnamed}: expected a .safetensors file (Mimi checkpoint in the published"),
                      (tmp_path / "gone.safetensors", "Mimi checkpoint file "),
                      (cut, f"{cut} is truncated")):
        with pytest.raises(CheckpointError) as checked:
            check_safetensors(bad, "Mimi checkpoint")
        with pytest.raises(CheckpointError) as read:
            read_safetensors(bad, "cpu", "Mimi checkpoint")
        assert str(checked.value) == str(read.value) and said in str(checked.value), str(checked.value)
