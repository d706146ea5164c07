"""`kame bench latency --modes`: tandem, cascade, or both (= tandem,cascade, as kame demo's --mode
both; was: refused by a message that offered it); its --out is also -o, as kame run's --output."""

import pytest

from kame.bench.latency import parse_modes
from kame.cli import _build_parser, main


@pytest.mark.parametrize("text, modes", [
    ("both", ["tandem", "cascade"]),
    ("cascade,both", ["cascade", "tandem"]),
    (" tandem , tandem ", ["tandem"]),
    ("tandem,cascade", ["tandem", "cascade"]),
])
def test_both_is_tandem_and_cascade(text, modes):
    assert parse_modes(text) == modes


@pytest.mark.parametrize("text, said", [("tandem,foo", "--modes: unknown mode 'foo'"), (",", "names no mode")])
def test_the_error_lists_what_it_accepts(text, said, tmp_path, capsys):
    out = tmp_path / "lat"
    assert main(["bench", "latency", "-o", str(out), "--turns", "1", "--modes", text]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kame: error: ") and said in err and "tandem, cascade, or both (= tandem,cascade)" in err
    assert not out.exists()


def test_modes_both_runs_the_cascade_too(tmp_path, capsys):
    """Its cascade config is checked before anything runs: a cascade without STT is refused."""
    out = tmp_path / "lat"
    assert main(["bench", "latency", "--out", str(out), "--turns", "1", "--modes", "both",
                 "--set", "backend.stt=none"]) == 1
    assert "backend.stt = 'none' cannot be used with mode = 'cascade'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv", [["bench", "latency"], ["demo"]])
def test_out_is_also_dash_o(argv, tmp_path):
    argv = [*argv, "-o", str(tmp_path / "x")]
    assert _build_parser(argv)[0].parse_args(argv).out == str(tmp_path / "x")


def test_reanalyse_of_a_file_or_a_folder_named_latency_json_is_one_line(tmp_path, capsys):
    """`kame bench latency --reanalyse -o FILE`, or a folder whose latency.json is a folder: a clear
    "kame: error: --reanalyse: cannot read ..." (was: a NotADirectoryError / IsADirectoryError traceback)."""
    from kame.cli import main

    (tmp_path / "qa.jsonl").write_text("{}\n")
    (tmp_path / "r1" / "latency.json").mkdir(parents=True)
    for out, why in (("qa.jsonl", "Not a directory"), ("r1", "Is a directory")):
        assert main(["bench", "latency", "--reanalyse", "-o", str(tmp_path / out)]) == 1
        err = capsys.readouterr().err.strip()
        assert err == (f"kame: error: --reanalyse: cannot read {tmp_path / out / 'latency.json'}: {why} (give --out "
                       f"the folder of a kame bench latency run)"), err
