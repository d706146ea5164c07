"""kame eval follow's table for a dialogue whose agent says no word (qa5): no raw None, a summary
that says why there is no onset, and a note for the words the total text WER counts that no row
shows."""

from __future__ import annotations

from kame.eval.follow import _onset_cell, _onset_total, _unreferenced_note, _wer_cell


def _rec(ref_words: int, text_errors: int, onset):
    return {"ref_words": ref_words, "text_errors": text_errors, "onset_error_s": onset}


def test_a_dialogue_without_agent_words_shows_dashes_and_the_words_it_said():
    silent = _rec(0, 7, None)  # no reference words; the front-end said 7
    assert _onset_cell(silent) == "–" and _onset_cell(_rec(4, 1, -0.24)) == "-0.24"
    assert _wer_cell(silent) == "– (7 words said, no reference)"
    assert _wer_cell(_rec(0, 0, None)) == "–" and _wer_cell(_rec(4, 1, 0.1)) == "25.0"


def test_the_summary_says_why_there_is_no_onset_and_what_the_total_wer_counts():
    assert _onset_total([_rec(0, 7, None)]) == "– (no reference words)"
    assert _onset_total([_rec(0, 7, None), _rec(3, 3, None)]) == "– (no word said)"
    assert _onset_total([_rec(0, 7, None), _rec(3, 1, -0.5), _rec(3, 1, 0.1)]) == "0.30 (of 2)"
    note = _unreferenced_note([_rec(0, 7, None), _rec(4, 9, 0.1), _rec(0, 0, None)])
    assert note == ("(the text WER counts as errors the 7 words said in 1 dialogue(s) whose agent says no word in "
                    "the reference)")
    assert _unreferenced_note([_rec(4, 9, 0.1), _rec(0, 0, None)]) is None
    assert _unreferenced_note([_rec(0, 7, None)]) is None  # (no total WER then: "–")
