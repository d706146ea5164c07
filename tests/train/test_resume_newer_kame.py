"""`kame train --resume` of a checkpoint a newer kame made says "made by a newer kame ... upgrade
kame" (kame.model.config.newer_kame), before train's own check of the settings it records (was: a
newer format with a new training knob got check_known's "settings this kame does not know" first)."""

from __future__ import annotations

import json

import pytest

from kame import __version__
from kame.cli import main
from kame.errors import ConfigError
from kame.train.config import STATE, resume_record

from .test_finetune import _data


def _checkpoint(folder, **kame):
    folder.mkdir()
    (folder / STATE).write_bytes(b"state")  # (not read: the record is refused first)
    (folder / "config.json").write_text(json.dumps({"dim": 8, "kame": kame}))
    return folder


def test_a_checkpoint_of_a_newer_format_says_upgrade_kame_first(tmp_path, capsys):
    manifest = _data(tmp_path / "data")
    ckpt = _checkpoint(tmp_path / "newer", format=2, written_by="9.1.0",
                       train={"config": {"lr": 1e-4, "curriculum_v9": "x"}, "frontend": "random:tiny"})
    capsys.readouterr()
    assert main(["train", str(manifest), "-o", str(tmp_path / "o"), "--resume", str(ckpt)]) == 1
    err = capsys.readouterr().err
    assert f"kame: error: train: --resume {ckpt}: its config.json was made by a newer kame (format 2, this kame " \
           f"reads up to 1; it was written by kame 9.1.0): upgrade kame" in err, err
    assert "settings this kame does not know" not in err and err.count("kame: error") == 1, err
    assert not (tmp_path / "o").exists()


def test_a_new_setting_from_a_later_kame_version_says_upgrade_kame(tmp_path):
    later = _checkpoint(tmp_path / "later", format=1, written_by="9.1.0", train={"config": {"curriculum_v9": "x"}})
    with pytest.raises(ConfigError, match=r"its config.json was made by a newer kame \(kame 9.1.0, this is kame "
                                          r".*kame.train.config.curriculum_v9: upgrade kame"):
        resume_record(later)
    # written by this kame (or another tool): train's own check names the setting
    mine = _checkpoint(tmp_path / "mine", format=1, written_by=__version__, train={"config": {"curriculum_v9": "x"}})
    with pytest.raises(ConfigError, match=r"records training settings this kame does not know \(curriculum_v9\)"):
        resume_record(mine)
    ok = _checkpoint(tmp_path / "ok", format=1, written_by=__version__, train={"config": {"lr": 1e-4}})
    assert resume_record(ok) == {"config": {"lr": 1e-4}}
