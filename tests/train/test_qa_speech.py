"""`kame data synth`'s text: emoji are not spoken (was: "grinning face", "party popper" in the training
speech), and a lone surrogate escape in a QA record is refused up front naming the file and line
(was: that item failed with a raw UnicodeEncodeError from the TTS)."""

import json

import pytest

from kame.cli import main
from kame.train.data import DataError
from kame.train.qa import QAItem, read_qa, spoken_turns


def test_emoji_are_not_in_the_spoken_turns():
    item = QAItem("qa/x/0", "What is 3 * 4? 😀", "**Twelve.** 3 * 4 = 12 🎉 👍🏽", {})
    assert spoken_turns(item) == ("What is 3 times 4?", "Twelve. 3 times 4 is 12")


@pytest.mark.parametrize("first, record", [
    ({"question": "Fine?", "answer": "Yes."}, {"question": "What is \ud83d this?", "answer": "Nothing."}),
    ({"question": "Which one?", "options": ["a", "b"], "answer": "A"},
     {"question": "Which one?", "options": ["a", "b\ude00"], "answer": "A"}),
])
def test_a_lone_surrogate_is_refused_naming_the_file_and_line(tmp_path, first, record):
    qa = tmp_path / "qa.jsonl"
    # (json.dumps writes the half as the escape "\ud83d", as a broken exporter does)
    qa.write_text(json.dumps(first) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError, match=rf"^{qa}:2: a lone surrogate \\ud[89a-f][0-9a-f]{{2}} \(half of a "
                                        r"character's JSON escape\): text no TTS can say; fix or remove the escape$"):
        read_qa(qa)


def test_kame_data_synth_refuses_it_before_anything_is_made(tmp_path, capsys):
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "Hi \\ud83d there?", "answer": "Hello."}\n')
    out = tmp_path / "s"
    assert main(["data", "synth", str(qa), "-o", str(out), "--llm", "none", "--user-voice", "espeak:en-us",
                 "--agent-voice", "espeak:en-us"]) != 0
    assert f"{qa}:1: a lone surrogate \\ud83d" in capsys.readouterr().err
    assert not out.exists()
