"""The embedded LLM's converted copy (kame.backend.llm.converted): the first load reads the GGUF
file and keeps a float32 copy in kame's cache; later loads read the copy and get the same model,
tokenizer and answers. A broken copy is made again; a cache that cannot be written is a warning.
One real GGUF load for the module (~30 s on 2 cores)."""

import logging
import os
import shutil
import stat
import time

import pytest

from kame.backend.llm import converted
from kame.backend.llm.context import fit_context
from kame.errors import ConfigError

pytestmark = pytest.mark.slow

MSGS = [{"role": "system", "content": "Answer in one short sentence."},
        {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def gguf():
    pytest.importorskip("transformers")
    from kame.backend.llm.embedded import smollm2_path

    return smollm2_path()


@pytest.fixture(scope="module")
def made(gguf, tmp_path_factory):
    """(model, tokenizer, cache folder) of a first load into an empty cache: read from the GGUF file."""
    cache = tmp_path_factory.mktemp("kame_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KAME_CACHE", str(cache))
        assert not converted.has_copy(gguf)
        model, tok = converted.load_model(gguf)
        assert converted.has_copy(gguf)
    return model, tok, cache


@pytest.fixture
def cache(made, tmp_path, monkeypatch):
    """A cache of this test's own holding the module's copy; a conversion gives the module's model."""
    own = tmp_path / "cache"
    shutil.copytree(made[2], own, copy_function=os.link)  # (no second 520 MB: a test replaces a file, never writes it)
    monkeypatch.setenv("KAME_CACHE", str(own))
    calls = []

    def from_gguf(path):
        calls.append(path)
        return made[0], made[1]

    monkeypatch.setattr(converted, "_from_gguf", from_gguf)
    return own, calls


def _answer(model, tok, n=12):
    import torch

    _, inputs, n_in = fit_context(tok, MSGS, n, 8192)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=n, do_sample=False, temperature=None, top_p=None, top_k=None,
                             pad_token_id=tok.eos_token_id)
    return inputs["input_ids"].tolist(), tok.decode(out[0, n_in:], skip_special_tokens=True)


def test_the_copy_is_the_same_model_and_tokenizer(made, gguf, cache):
    model, tok, _ = made
    again, tok_again = converted.load_model(gguf)
    assert cache[1] == []  # read from the copy, not the GGUF file
    assert again is not model
    first, second = model.state_dict(), again.state_dict()
    assert first.keys() == second.keys()
    assert all(first[k].dtype == second[k].dtype and first[k].equal(second[k]) for k in first)
    ids, text = _answer(model, tok)
    assert _answer(again, tok_again) == (ids, text) and "Paris" in text
    assert tok_again.eos_token_id == tok.eos_token_id


@pytest.mark.parametrize("fault", ["truncated", "a weight missing", "no config"])
def test_a_broken_copy_is_logged_and_made_again(made, gguf, cache, caplog, fault):
    from safetensors.torch import load_file, save_file

    folder = converted.copy_dir(gguf)
    weights = folder / converted.WEIGHTS
    if fault == "truncated":
        head = weights.read_bytes()[: weights.stat().st_size // 2]
        weights.unlink()  # (a new file: the module's copy shares this one's bytes)
        weights.write_bytes(head)
    elif fault == "a weight missing":
        tensors = load_file(str(weights))
        tensors.pop(sorted(tensors)[-1])
        weights.unlink()
        save_file(tensors, str(weights), metadata={"format": "pt"})
    else:
        (folder / "config.json").unlink()
    with caplog.at_level(logging.WARNING, logger=converted.__name__):
        model, tok = converted.load_model(gguf)
    assert model is made[0] and cache[1] == [gguf]  # converted again
    assert f"converted copy {folder} does not load" in caplog.text
    again, _ = converted.load_model(gguf)  # the new copy loads, whole
    assert cache[1] == [gguf] and again.state_dict().keys() == made[0].state_dict().keys()


def test_a_cache_that_cannot_be_written_is_a_warning_and_the_load_goes_on(made, gguf, cache, tmp_path,
                                                                            monkeypatch, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("KAME_CACHE", str(blocker))
    with caplog.at_level(logging.WARNING, logger=converted.__name__):
        model, _ = converted.load_model(gguf)
    assert model is made[0]
    assert f"cannot keep a converted copy of the embedded LLM in {blocker / 'llm'}" in caplog.text
    assert blocker.read_text() == "" and not list(tmp_path.glob("a_file*/**"))


def test_no_home_folder_is_a_warning_and_the_load_goes_on(made, gguf, cache, monkeypatch, caplog):
    def no_home(part):
        raise ConfigError("the cache folder (or set KAME_CACHE): cannot expand ~ in ~/.cache/kame: no home directory")

    monkeypatch.setattr(converted, "kame_cache", no_home)
    with caplog.at_level(logging.WARNING, logger=converted.__name__):
        model, _ = converted.load_model(gguf)
    assert model is made[0] and "no converted copy of the embedded LLM: the cache folder" in caplog.text
    assert not converted.has_copy(gguf)


def test_a_new_copy_replaces_that_files_copies_for_other_transformers_only(made, gguf, cache):
    own = cache[0] / "llm"
    folder = converted.copy_dir(gguf)
    digest = folder.name.rsplit("-transformers-", 1)[0]
    old_version = own / f"{digest}-transformers-4.0.0"
    killed_old = own / f".{digest}-transformers-4.0.0.x1y2z3"  # a killed writer's, an hour old
    killed_now = own / f".{folder.name}.a1b2c3"  # a writer's, maybe at work now
    kept = [own / f"{gguf.name}-0123456789abcdef-transformers-4.0.0",  # another file of that name
            own / f"{gguf.name}2-{digest.rsplit('-', 1)[1]}-transformers-4.0.0",  # a longer name
            own / "Other-Model.Q8_0.gguf-0123456789abcdef-transformers-4.0.0", killed_now]
    for path in (old_version, killed_old, *kept):
        shutil.copytree(folder, path, copy_function=os.link)
    os.utime(killed_old, (time.time() - 3 * 3600,) * 2)
    shutil.rmtree(folder)
    converted.load_model(gguf)
    assert cache[1] == [gguf]
    assert sorted(p.name for p in own.iterdir()) == sorted([folder.name, *(p.name for p in kept)])


def test_a_copy_another_process_made_meanwhile_is_kept(made, gguf, cache, monkeypatch):
    folder = converted.copy_dir(gguf)
    theirs = folder.parent / "theirs"
    folder.rename(theirs)
    real = converted.default_mode

    def meanwhile(path):  # (as this copy's writing ends, another process's rename has come first)
        if theirs.exists():
            theirs.rename(folder)
        real(path)

    monkeypatch.setattr(converted, "default_mode", meanwhile)
    before = (made[2] / "llm" / folder.name / converted.WEIGHTS).stat().st_ino  # (theirs: a hard link of it)
    converted.load_model(gguf)
    assert cache[1] == [gguf]  # (this process converted too)
    assert (folder / converted.WEIGHTS).stat().st_ino == before  # theirs kept (was: replaced by this one's)
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # (no temporary left)


def test_a_killed_writers_temporary_is_removed_by_a_load_from_the_copy(made, gguf, cache):
    folder = converted.copy_dir(gguf)
    killed = folder.parent / f".{folder.name}.k1l2d3"
    shutil.copytree(folder, killed, copy_function=os.link)
    os.utime(killed, (time.time() - 3 * 3600,) * 2)
    converted.load_model(gguf)
    assert cache[1] == [] and not killed.exists()  # (was: swept only when a copy was made)


def test_a_copy_folder_without_its_weights_is_made_again_whole(made, gguf, cache):
    folder = converted.copy_dir(gguf)
    (folder / converted.WEIGHTS).unlink()  # (a removal cut short)
    converted.load_model(gguf)
    assert cache[1] == [gguf] and (folder / converted.WEIGHTS).is_file()
    converted.load_model(gguf)
    assert cache[1] == [gguf]  # read from the new copy


def test_the_copy_has_the_permissions_of_a_new_file(made, gguf, cache):
    folder = converted.copy_dir(gguf)
    shutil.rmtree(folder)
    umask = os.umask(0o022)
    try:
        converted.load_model(gguf)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # (was mkdtemp's 0700: other users of a shared cache)
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o644}  # (safetensors' 0600)


def test_a_copy_that_cannot_be_read_is_a_warning_and_the_load_goes_on(made, gguf, cache, monkeypatch, caplog):
    folder = converted.copy_dir(gguf)
    real = type(folder).is_file

    def unreadable(path):  # (another user's copy, 0700: is_file raises PermissionError)
        if path == folder / converted.WEIGHTS:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(type(folder), "is_file", unreadable)
    with caplog.at_level(logging.WARNING, logger=converted.__name__):
        model, _ = converted.load_model(gguf)
    assert model is made[0]  # (was: PermissionError, the child failed to start)
    assert f"no converted copy of the embedded LLM: Permission denied: {folder / converted.WEIGHTS}; " \
           "set KAME_CACHE to a folder of your own; each start reads the GGUF file" in caplog.text


def test_a_disk_without_room_for_the_copy_is_a_warning_and_nothing_is_written(made, gguf, cache, monkeypatch,
                                                                             caplog):
    folder = converted.copy_dir(gguf)
    shutil.rmtree(folder)
    monkeypatch.setattr(converted.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 << 30, 0, 900 << 20))
    with caplog.at_level(logging.WARNING, logger=converted.__name__):
        model, _ = converted.load_model(gguf)
    assert model is made[0] and not folder.exists() and list(folder.parent.iterdir()) == []
    assert (f"no converted copy of the embedded LLM in {folder.parent}: it takes 513 MB and leaves less than "
            "1024 MB free (900 MB free)") in caplog.text


def test_another_file_of_the_same_name_gets_its_own_copy(made, gguf, cache, tmp_path):
    changed = tmp_path / gguf.name
    changed.write_bytes(gguf.read_bytes() + b"\0")  # (never loaded: the conversion is the module's model)
    assert converted.copy_dir(changed) != converted.copy_dir(gguf)
    assert converted.copy_dir(changed).name.startswith(gguf.name + "-")
    assert not converted.has_copy(changed)
    converted.load_model(changed)
    assert cache[1] == [changed] and converted.has_copy(changed)
