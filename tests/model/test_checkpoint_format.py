"""config.json's kame.format and kame.written_by: every save records the checkpoint format and the
kame version that wrote it; a checkpoint from a newer kame is refused with "made by a newer kame
...: upgrade kame" (was: "unknown front-end config key(s)" / "unknown kame key(s)", which blame the
file); one written before formats were numbered loads as before. An empty config.json says so."""

import json
import shutil

import pytest

from kame import __version__
from kame.errors import ConfigError
from kame.model.config import KAME_FORMAT
from kame.model.loaders import load_frontend, save_frontend

UPGRADE = r"upgrade kame \(pip install -U kame-tandem\)"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = load_frontend("random:tiny", text_card=4000)[0]  # (kame's default tokenizer fits it)
    return save_frontend(model, tmp_path_factory.mktemp("fmt") / "ck", codec="embedded", tokenizer="default",
                         train={"steps": 1})


def _copy(saved, tmp_path, edit):
    folder = tmp_path / "ck"
    shutil.copytree(saved, folder)
    raw = json.loads((folder / "config.json").read_text())
    edit(raw)
    (folder / "config.json").write_text(json.dumps(raw))
    return folder


def test_a_save_records_the_format_and_the_kame_that_wrote_it(saved, tmp_path):
    kame = json.loads((saved / "config.json").read_text())["kame"]
    assert kame["format"] == KAME_FORMAT and kame["written_by"] == __version__
    # a checkpoint of an older kame (no format), saved again by this one: stamped as this kame's
    old = _copy(saved, tmp_path, lambda raw: raw["kame"].update(format=None, written_by="0.0.1") or
                raw["kame"].pop("format"))
    again = save_frontend(load_frontend(old)[0], tmp_path / "again")
    kame = json.loads((again / "config.json").read_text())["kame"]
    assert (kame["format"], kame["written_by"], kame["codec"]) == (KAME_FORMAT, __version__, "embedded")


def test_a_checkpoint_of_a_newer_format_says_upgrade_kame(saved, tmp_path):
    folder = _copy(saved, tmp_path, lambda raw: raw["kame"].update(format=KAME_FORMAT + 1, written_by="9.1.0"))
    newer = (rf"{folder / 'config.json'}: made by a newer kame \(format {KAME_FORMAT + 1}, this kame reads up to "
             rf"{KAME_FORMAT}; it was written by kame 9.1.0\): {UPGRADE}$")
    with pytest.raises(ConfigError, match=newer):
        load_frontend(folder)
    # with keys this kame does not know (what a newer format adds): the same, not "unknown ... key(s)"
    raw = json.loads((folder / "config.json").read_text())
    raw["speaker_dim"] = 16
    raw["kame"]["speaker"] = "x"
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=newer):
        load_frontend(folder)


def test_unknown_keys_from_a_later_kame_version_say_upgrade_kame(saved, tmp_path):
    # this format, but a later version that added a key (a format need not be raised for every key)
    folder = _copy(saved, tmp_path, lambda raw: raw["kame"].update(written_by="9.1.0", speaker="x"))
    with pytest.raises(ConfigError, match=rf"made by a newer kame \(kame 9.1.0, this is kame {__version__}\), with "
                                          rf"key\(s\) this kame does not know: speaker: {UPGRADE}"):
        load_frontend(folder)


def test_a_checkpoint_without_a_format_loads_as_before(saved, tmp_path):
    def unnumbered(raw):
        del raw["kame"]["format"], raw["kame"]["written_by"]

    folder = _copy(saved, tmp_path, unnumbered)
    assert load_frontend(folder)[1].kame["codec"] == "embedded"
    raw = json.loads((folder / "config.json").read_text())
    raw["speaker_dim"] = 16  # and an unknown key is the file's fault, as before
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"config.json: unknown front-end config key\(s\): speaker_dim$"):
        load_frontend(folder)


@pytest.mark.parametrize("kame, message", [
    ({"format": "2"}, r"config key kame.format='2': expected an integer >= 1"),
    ({"format": 0}, r"config key kame.format=0: expected an integer >= 1"),
    ({"format": True}, r"config key kame.format=True: expected an integer >= 1"),
    ({"written_by": ""}, r"config key kame.written_by='': expected a non-empty string"),
])
def test_a_bad_format_or_version_is_named(saved, tmp_path, kame, message):
    folder = _copy(saved, tmp_path, lambda raw: raw["kame"].update(kame))
    with pytest.raises(ConfigError, match=message):
        load_frontend(folder)


@pytest.mark.parametrize("text, message", [
    ("{}", r"config.json is empty \(a JSON object without keys\): it gives none of the model's config"),
    ("", r"config.json is empty \(0 bytes\): expected a JSON object"),
])
def test_an_empty_config_json_says_so(saved, tmp_path, text, message):
    # was: "{}" run as Moshi 7B, "trained on Mimi codes (a Moshi repo without config.json)"
    folder = tmp_path / "ck"
    shutil.copytree(saved, folder)
    (folder / "config.json").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_frontend(folder)
