"""kame.paths and read_wav: checks made before the work, without side effects."""

import errno
import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kame.audio import read_wav
from kame.errors import ConfigError, KameError
from kame.paths import check_output_file, check_output_folder, check_replaceable, write_replacing


def test_output_check_leaves_nothing_behind(tmp_path):
    out = tmp_path / "new" / "out.wav"
    assert check_output_file(out) == out and sorted(os.listdir(out.parent)) == []  # folder made, no file
    link = tmp_path / "link.wav"
    link.symlink_to(tmp_path / "gone" / "real.wav")  # a dangling link stays as it was
    check_output_file(link)
    assert link.is_symlink() and not (tmp_path / "gone").exists()
    ro = tmp_path / "ro.wav"
    ro.write_bytes(b"x")
    ro.chmod(0o444)  # replaced by the writers' rename, so not refused
    check_output_file(ro)
    assert ro.read_bytes() == b"x"
    if os.path.isdir("/proc/self"):  # root may pass os.access there, yet nothing can be made
        with pytest.raises(ConfigError, match="cannot"):
            check_output_file("/proc/self/kame-out.wav")


def test_a_file_where_a_folder_must_be_is_named(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for path in (afile / "x.wav", afile / "deeper" / "x.wav"):
        with pytest.raises(ConfigError, match=f"cannot create its folder: {afile} is a file, not a folder"):
            check_output_file(path)
    with pytest.raises(ConfigError, match=f"--out {afile}: cannot create the folder: {afile} is a file"):
        check_output_folder(afile)


def test_wav_with_a_placeholder_length_reads(tmp_path):
    """A writer that could not seek back (arecord, sox to a pipe) leaves a placeholder data size;
    such a file is whole, not truncated."""
    wav = tmp_path / "stream.wav"
    sf.write(wav, np.zeros(2400, np.float32), 24000, subtype="PCM_16")
    raw = bytearray(wav.read_bytes())
    i = raw.index(b"data")
    raw[i + 4 : i + 8] = (0x7FFFFFFF).to_bytes(4, "little")
    wav.write_bytes(bytes(raw))
    assert read_wav(wav)[0].shape == (2400,)


def test_output_folder_check_makes_a_file_there(tmp_path):
    from kame.paths import check_output_folder

    assert check_output_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert os.listdir(tmp_path / "a" / "b") == []
    if os.path.isdir("/proc/self"):  # the same check as for a file: root passes os.access there
        with pytest.raises(ConfigError, match="cannot write into"):
            check_output_folder("/proc/self")


def test_an_empty_output_path_says_so():
    """(was: "-o  is a folder, cannot write a file there")"""
    with pytest.raises(ConfigError, match=r"^-o is empty; give the file to write, e.g. -o answer.wav$"):
        check_output_file("", suffix=".wav")
    with pytest.raises(ConfigError, match=r"^--json is empty; give the file to write, e.g. --json answer.json$"):
        check_output_file("", flag="--json")
    with pytest.raises(ConfigError, match=r"^--out is empty; give the file to write$"):
        check_output_file("", flag="--out")
    with pytest.raises(ConfigError, match=r"^--out is empty"):
        check_output_folder(" ")


def test_an_empty_audio_file_says_so(tmp_path):
    """(was: "cannot read audio file ...: Format not recognised")"""
    from kame.errors import AudioFormatError

    empty = tmp_path / "q.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioFormatError, match=r"q\.wav is empty \(0 bytes\)"):
        read_wav(empty)


def test_a_folder_given_as_the_output_file_is_called_a_folder(tmp_path):
    """(was: "-o DIR: the output must be a .wav file", kame run's -o an existing folder)"""
    with pytest.raises(ConfigError, match=rf"^-o {tmp_path} is a folder, cannot write a file there; give a file name "
                                          rf"such as {tmp_path / 'answer.wav'}"):
        check_output_file(tmp_path, suffix=".wav")
    new = f"{tmp_path}/new/"  # a folder name that does not exist yet (was: "unknown file type '(no extension)'")
    with pytest.raises(ConfigError, match=r"new/ is a folder, cannot write a file there"):
        check_output_file(new, file_type=lambda p: pytest.fail("asked for the type of a folder"))
    assert not (tmp_path / "new").exists()


# --- check_replaceable, write_replacing: an existing output replaced whole, never written through


def test_replace_check_is_skipped_where_there_are_no_user_ids(tmp_path, monkeypatch):
    """Windows has neither os.geteuid nor os.O_NONBLOCK (nor sticky folders or chattr): an existing
    output passes (was: AttributeError for any existing output)."""
    out = tmp_path / "o.json"
    out.write_text("{}")
    monkeypatch.delattr(os, "geteuid")
    monkeypatch.delattr(os, "O_NONBLOCK")
    check_replaceable(out, "-o o.wav")
    assert out.read_text() == "{}"


def test_a_link_put_there_after_the_look_is_not_opened_through(tmp_path, monkeypatch):
    """A symbolic link swapped in between the check's lstat (a regular file, then) and its open
    is not followed: the file it points to (here immutable: EPERM) is not what gets replaced, so
    it is not refused; a fifo or device there is not opened."""
    target, out = tmp_path / "target", tmp_path / "o.json"
    target.write_text("theirs")
    out.symlink_to(target)
    real_lstat, real_open = os.lstat, os.open
    monkeypatch.setattr(os, "lstat", lambda p, *a, **kw: os.stat(p) if str(p) == str(out) else real_lstat(p, *a, **kw))
    opened = []

    def open_(p, flags, *a, **kw):
        fd = real_open(p, flags, *a, **kw)
        if os.fstat(fd).st_ino == target.stat().st_ino:  # (through the link: the target is immutable)
            os.close(fd)
            opened.append(p)
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(p))
        return fd

    monkeypatch.setattr(os, "open", open_)
    check_replaceable(out, "-o o.wav")  # (was: "cannot replace ...: the system does not allow changing it")
    assert opened == [] and target.read_text() == "theirs"


def _stat(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, uid, 0, 0, 0, 0))


def test_another_users_file_in_a_sticky_folder_is_refused(tmp_path, monkeypatch):
    """/tmp's rule: only the file's (or the folder's) owner, or root, may replace it."""
    out = tmp_path / "o.json"
    out.write_text("{}")
    real_lstat, real_stat = os.lstat, os.stat
    monkeypatch.setattr(os, "lstat", lambda p, *a, **kw: _stat(stat.S_IFREG | 0o644, 2000) if str(p) == str(out)
                        else real_lstat(p, *a, **kw))
    monkeypatch.setattr(os, "stat", lambda p, *a, **kw: _stat(stat.S_IFDIR | 0o1777, 0) if str(p) == str(tmp_path)
                        else real_stat(p, *a, **kw))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigError, match=rf"^--out d: cannot replace {out}: it is another user's, in a folder with "
                                          rf"the sticky bit .*give another --out$"):
        check_replaceable(out, "--out d", "--out")
    for uid in (2000, 0):  # its owner, root: replaced
        monkeypatch.setattr(os, "geteuid", lambda: uid)
        check_replaceable(out, "--out d", "--out")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not sticky: replaced
    monkeypatch.setattr(os, "stat", lambda p, *a, **kw: _stat(stat.S_IFDIR | 0o777, 0) if str(p) == str(tmp_path)
                        else real_stat(p, *a, **kw))
    check_replaceable(out, "--out d", "--out")


def test_concurrent_writers_of_one_path_do_not_share_a_temporary_file(tmp_path):
    """Two writers of one file at once (threads here; or one PID in two containers sharing a
    volume) each write a temporary file of their own: the file is one of them whole (was: one
    temporary name per process, so one writer's rename took the other's file away mid-write)."""
    out, both = tmp_path / "o.json", threading.Barrier(2)
    failed, temps = [], []

    def writer(text: str) -> None:
        def write(tmp):
            temps.append(tmp.name)
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                both.wait(timeout=10)  # (both written, neither renamed yet)

        try:
            write_replacing(out, write)
        except BaseException as exc:  # noqa: BLE001 -- said below
            failed.append(exc)

    texts = ["a" * 1000, "b" * 1000]
    threads = [threading.Thread(target=writer, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert failed == [] and len(set(temps)) == 2
    assert out.read_text() in texts and os.listdir(tmp_path) == ["o.json"]


def test_an_interrupted_write_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "o.json"
    out.write_text("old")

    def write(tmp, exc):
        tmp.write_text("half")
        raise exc

    for exc in (KeyboardInterrupt(), ZeroDivisionError("a bug")):  # raised as they are, not as a KameError
        with pytest.raises(type(exc)):
            write_replacing(out, lambda tmp: write(tmp, exc))
        assert os.listdir(tmp_path) == ["o.json"] and out.read_text() == "old"
    with pytest.raises(KameError, match=f"^cannot write file {out}: Permission denied$"):
        write_replacing(out, lambda tmp: write(tmp, PermissionError(errno.EACCES, "Permission denied")))
    assert os.listdir(tmp_path) == ["o.json"] and out.read_text() == "old"


def test_a_written_file_has_the_mode_a_plain_open_gives(tmp_path):
    """mkstemp makes its file 0600; the file written is given what open() gives a new file."""
    old = os.umask(0o027)
    try:
        write_replacing(tmp_path / "o.json", lambda tmp: tmp.write_text("{}"))
        with open(tmp_path / "plain", "w") as f:
            f.write("{}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "o.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o640


def test_a_link_is_replaced_by_the_file_not_written_through(tmp_path):
    target, out = tmp_path / "target", tmp_path / "o.json"
    target.write_text("theirs")
    out.symlink_to(target)
    write_replacing(out, lambda tmp: tmp.write_text("ours"))
    assert not out.is_symlink() and out.read_text() == "ours" and target.read_text() == "theirs"


def test_a_write_failure_is_the_error_asked_for(tmp_path):
    """write_replacing's ``error``: training data's writers say DataError, naming the file."""
    from kame.train.data import DataError, _write_text

    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=f"^cannot write file {tmp_path / 'file' / 'x.json'}: File exists$"):
        _write_text(tmp_path / "file" / "x.json", "{}")
    with pytest.raises(DataError, match="cannot write codes cache"):
        write_replacing(tmp_path / "c.npz", lambda tmp: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")),
                        "codes cache", error=DataError)
    assert sorted(os.listdir(tmp_path)) == ["file"]


def _no_home(monkeypatch):
    """HOME unset and a uid without a passwd entry (docker run -u 4242, OpenShift)."""
    import pwd

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)


def test_a_tilde_without_a_home_directory_is_a_config_error_naming_the_option(monkeypatch):
    from kame.paths import expand_user, local_path

    _no_home(monkeypatch)
    with pytest.raises(ConfigError, match=r"^--config: cannot expand ~ in ~/k.toml: no home directory "
                                          r"\(HOME is not set.*; set HOME or give the full path"):
        expand_user("~/k.toml", "--config")
    with pytest.raises(ConfigError, match=r"^frontend.spec: cannot expand ~ in ~/fe"):
        local_path("file://~/fe", "frontend.spec")
    with pytest.raises(ConfigError, match=r"^cannot expand ~ in ~/fe: no home directory"):
        local_path("~/fe")
    with pytest.raises(ConfigError, match=r"cannot expand ~no_such_user_kame in ~no_such_user_kame/x: there is no user"):
        expand_user("~no_such_user_kame/x", "--out")
    assert expand_user("/abs/~x", "--out") == Path("/abs/~x")  # only a leading ~ is expanded


def test_a_tilde_frontend_spec_without_a_home_directory_names_the_setting(monkeypatch):
    from kame.config import load_config

    _no_home(monkeypatch)
    with pytest.raises(ConfigError, match=r"frontend.spec: cannot expand ~ in ~/fe: no home directory"):
        load_config(None, ["frontend.spec=~/fe"])


def test_a_tilde_config_file_or_tokenizer_without_a_home_directory_names_it(monkeypatch):
    """--config ~/k.toml and a tokenizer at ~/x.model (was: pathlib's RuntimeError traceback)."""
    from kame.backend.tokenizer import TextTokenizer
    from kame.config import load_config

    _no_home(monkeypatch)
    with pytest.raises(ConfigError, match=r"^--config: cannot expand ~ in ~/k.toml: no home directory"):
        load_config("~/k.toml", [])
    with pytest.raises(ConfigError, match=r"^tokenizer: cannot expand ~ in ~/x.model: no home directory"):
        TextTokenizer("~/x.model")


def test_kame_run_checks_the_length_of_the_names_written_next_to_its_output(tmp_path, capsys):
    """OUT.json is a byte longer than OUT.wav: a 255-byte OUT.wav is refused before the run (was:
    the whole run, then 'File name too long' for OUT.json)."""
    from kame.audio import write_wav
    from kame.cli import main

    write_wav(tmp_path / "in.wav", np.zeros(2400, np.float32))
    out = tmp_path / ("a" * 251 + ".wav")
    assert main(["run", str(tmp_path / "in.wav"), "-o", str(out), "--fast"]) == 1
    assert "(the .json file written next to it) is 256 bytes" in capsys.readouterr().err


def test_a_name_the_system_allows_is_written_though_its_temporary_name_is_longer(tmp_path):
    """A 250-byte name: `.NAME.RANDOM.tmp` would be 268 (was: "File name too long" after the whole run)."""
    from kame.paths import name_max

    limit = name_max(tmp_path)
    out = check_output_file(tmp_path / ("a" * (limit - 4) + ".wav"))
    write_replacing(out, lambda tmp: tmp.write_bytes(b"x"))
    assert out.read_bytes() == b"x" and os.listdir(tmp_path) == [out.name]


def test_a_name_longer_than_the_system_allows_is_refused_before_the_work(tmp_path):
    """Not pathlib's OSError "File name too long" traceback (-o, --out), nor a failure after the
    run for a file written next to it (OUT.json)."""
    from kame.paths import name_max

    limit = name_max(tmp_path)
    long = "b" * (limit + 5)
    with pytest.raises(ConfigError, match=rf"^-o .*: file name too long: b+\.\.\.b+\.wav is {limit + 9} bytes, "
                                          rf"more than the {limit} bytes"):
        check_output_file(tmp_path / (long + ".wav"))
    with pytest.raises(ConfigError, match=rf"^--out .*: file name too long: .* is {limit + 5} bytes"):
        check_output_folder(tmp_path / long)
    with pytest.raises(ConfigError, match="^--json .*: file name too long"):
        check_output_file(tmp_path / long / "x.json", flag="--json")
    fits = "c" * (limit - 4) + ".wav"
    with pytest.raises(ConfigError, match=r"file name too long: c+\.\.\.c+\.json \(the \.json file written next to it\)"):
        check_output_file(tmp_path / fits, sidecars=(".json",))
    assert os.listdir(tmp_path) == []


def test_each_part_of_a_path_is_held_to_the_name_limit_of_the_file_system_it_is_on(tmp_path, monkeypatch):
    """A folder with a 30-byte name here, holding a mount whose names may have 20 bytes (as an
    eCryptfs mount's 143): writing into the mount is allowed (was: the existing 30-byte folder was
    held to the mount's limit and refused), a 25-byte new name in it is refused."""
    mount = tmp_path / ("d" * 30) / "mnt"
    mount.mkdir(parents=True)
    real = os.pathconf
    monkeypatch.setattr(os, "pathconf", lambda f, name: 20 if Path(f) == mount else real(f, name))
    assert check_output_file(mount / "out.wav", sidecars=(".json",)) == mount / "out.wav"
    with pytest.raises(ConfigError, match=r"file name too long: e+\.wav is 25 bytes, more than the 20 bytes"):
        check_output_file(mount / ("e" * 21 + ".wav"))
    with pytest.raises(ConfigError, match=r"file name too long: f+ is 21 bytes, more than the 20 bytes"):
        check_output_folder(mount / ("f" * 21) / "out")


def test_stale_temporaries_are_kames_of_the_files_named_an_hour_old_and_only_in_the_folder(tmp_path):
    """remove_stale_temporaries (what each command removes where it writes, as it starts): kame's
    .NAME.RANDOM.tmp of the files named (a name too long for one: its hash, as write_replacing
    names it), an hour old, regular files, not in subfolders; ``names`` None: any of kame's."""
    import time

    from kame.paths import _new_temporary, name_max, remove_stale_temporaries

    long_name = "x" * (name_max(tmp_path) - 10) + ".wav"  # (its temporary's name: a hash of it)
    hashed = _new_temporary(tmp_path / long_name)
    ours = [tmp_path / ".out.wav.0123456789ab.tmp", hashed]
    others = [tmp_path / ".other.wav.0123456789ab.tmp", tmp_path / ".out.wav.0123456789ab.tmp~"]
    (tmp_path / "sub").mkdir()
    inside, folder, link = tmp_path / "sub" / ours[0].name, tmp_path / ".out.wav.ba9876543210.tmp", ours[0]
    for p in [ours[0], *others, inside]:
        p.write_bytes(b"x" * 10)
    folder.mkdir()
    hour_ago = time.time() - 3700
    for p in [*ours, *others, inside, folder]:
        os.utime(p, (hour_ago, hour_ago))
    assert remove_stale_temporaries(tmp_path, ("out.wav", long_name), older_than_s=7200) == []  # (not that old)
    assert sorted(remove_stale_temporaries(tmp_path, ("out.wav", long_name))) == sorted([(ours[0], 10), (hashed, 0)])
    assert all(p.exists() for p in [*others, inside, folder])
    link.symlink_to(others[0])  # (a link of that name, an hour old: not a file of kame's)
    os.utime(link, (hour_ago, hour_ago), follow_symlinks=False)
    assert remove_stale_temporaries(tmp_path) == [(others[0], 10)] and link.is_symlink() and inside.exists()


def test_what_a_command_removed_is_said_in_one_line_on_stderr(tmp_path, capsys):
    import time

    from kame.paths import sweep_temporaries

    stale = [tmp_path / f".out.wav.{n:012x}.tmp" for n in range(5)]
    for p in stale:
        p.write_bytes(b"x" * 300_000)
        os.utime(p, (time.time() - 3700,) * 2)
    assert len(sweep_temporaries("kame x", [(tmp_path, ("out.wav",)), (tmp_path / "none", None)])) == 5
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured
    assert captured.err.startswith("kame x: removed 5 temporary files of a write that was stopped, untouched for an "
                                   "hour (1.5 MB): ") and f"{stale[0]}, " in captured.err and ", ..." in captured.err
    assert sweep_temporaries("kame x", [(tmp_path, None)]) == [] and capsys.readouterr().err == ""
