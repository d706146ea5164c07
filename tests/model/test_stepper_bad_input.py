"""The stepper refuses bad arguments at call time with a clear error (was: oracle ids 5.9 / True fed
as 5 / 1 silently, "hello" an int() ValueError, batch_size 0 or -1 accepted then a torch error at
the step, reset(0) "'int' object is not iterable")."""

import numpy as np
import pytest
import torch

from kame.model.loaders import load_frontend
from kame.model.stepper import Stepper


@pytest.fixture(scope="module")
def model():
    return load_frontend("random:tiny")[0]


def user(B):
    return torch.zeros(B, 8, dtype=torch.long)


@pytest.mark.parametrize("ids, message", [
    ([5.9, True, 7.2], r"oracle token id \(row 0\) must be an int, got float 5.9"),
    ([5, True], r"oracle token id \(row 0\) must be an int, got bool True"),
    ("hello", r"oracle token ids \(row 0\) must be a sequence of int ids \(from the text tokenizer: .*\), got str 'hello'$"),
    (5, r"must be a sequence of int ids .*got int 5"),
    (np.array([1.5]), r"must be a 1-d sequence of int ids, got a ndarray of dtype float64"),
    (torch.tensor([1.0, 2.0]), r"must be a 1-d sequence of int ids, got a Tensor of dtype torch.float32"),
    (torch.tensor([True]), r"must be a 1-d sequence of int ids, got a Tensor of dtype torch.bool"),
    (np.array([[1, 2]]), r"must be a 1-d sequence of int ids, got a ndarray of dtype int64 and shape \(1, 2\)"),
    # (was: fed in the set's or dict's order, which is not the caller's)
    ({7, 5, 6}, r"must be a sequence of int ids \(from the text tokenizer: a list, tuple, range, or a 1-d "
                r"integer array or tensor\), got set \{.*\}: its order is undefined"),
    (frozenset({5}), r"got frozenset .*: its order is undefined"),
    ({5: "a"}, r"got dict \{5: 'a'\}: its order is undefined"),
    ((i for i in (5, 6)), r"got generator .*: give a list"),
    (iter([5, 6]), r"got list_iterator .*: give a list"),
])
def test_oracle_ids_must_be_ints(model, ids, message):
    st = Stepper(model, 1)
    with pytest.raises(TypeError, match=message):
        st.oracle.append(0, ids)
    with pytest.raises(TypeError, match=r"oracle row must be an int, got float 0.0"):
        st.oracle.append(0.0, [5])
    assert int(st.step(user(1)).oracle_in[0]) == model.cfg.existing_text_padding_id  # nothing was queued


def test_int_ids_of_every_kind_are_fed(model):
    st = Stepper(model, 1)
    st.oracle.append(0, [np.int64(5), torch.tensor(6)])
    st.oracle.append(0, np.array([7]))
    st.oracle.append(0, torch.tensor([8]))
    assert [int(st.step(user(1)).oracle_in[0]) for _ in range(5)] == [model.cfg.text_card, 5, 6, 7, 8]


def test_unsigned_and_other_sequences_of_ids_are_fed_alike(model):
    """Unsigned integer arrays and tensors alike (was: torch uint16/32/64 refused, numpy's fed)."""
    st = Stepper(model, 1)
    for ids in ([5], (6,), range(7, 8), np.array([8], np.uint32), np.array([9], np.uint64),
                torch.tensor([10], dtype=torch.uint16), torch.tensor([11], dtype=torch.uint32),
                torch.tensor([12], dtype=torch.uint64), torch.tensor([13], dtype=torch.int16)):
        st.oracle.append(0, ids)
    got = [int(st.step(user(1)).oracle_in[0]) for _ in range(10)]
    assert got == [model.cfg.text_card, *range(5, 14)]


@pytest.mark.parametrize("batch_size, error, message", [
    (0, ValueError, r"Stepper batch_size must be at least 1 \(one row per session\), got 0"),
    (-1, ValueError, r"at least 1 .*got -1"),
    (2.0, TypeError, r"Stepper batch_size must be an int, got float 2.0"),
    (True, TypeError, r"Stepper batch_size must be an int, got bool True"),
])
def test_batch_size_must_be_a_positive_int(model, batch_size, error, message):
    with pytest.raises(error, match=message):
        Stepper(model, batch_size)


def test_rows_are_a_row_or_rows(model):
    st = Stepper(model, 2, active=False)
    st.reset(0)  # a single row (was: TypeError 'int' object is not iterable)
    assert st.step(user(2)).oracle_in is not None and st.active == [True, False]
    st.pause(np.int64(0))
    st.resume(torch.tensor([0, 1]))
    st.step(user(2))
    assert st.active == [True, True]
    for rows, message in (("0", r"rows must be a row \(an int\) or a sequence of rows, got str '0'"),
                          (1.0, r"rows must be a row .*got float 1.0"), ([True], r"row must be an int, got bool True"),
                          ([0.5], r"row must be an int, got float 0.5")):
        with pytest.raises(TypeError, match=message):
            st.reset(rows)
    with pytest.raises(IndexError, match=r"rows \[2\] out of range \[0, 2\)"):
        st.reset(2)
