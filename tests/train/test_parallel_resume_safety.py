"""--resume of an untrusted checkpoint: train_state.pt's {"sharded": NAME} may name only the
checkpoint's own optimizer folder, its .metadata pickle is read by an unpickler that builds
only torch.distributed.checkpoint's metadata, and the values its data files hold as pickles by
torch.load(weights_only=True) (kame.train.parallel.load_optimizer)."""

import pickle
import warnings

import pytest
import torch

from kame.errors import CheckpointError
from kame.train.parallel import SHARDED_OPTIMIZER, load_optimizer


class _Payload:
    """A pickle that, loaded by a plain pickle.load, creates the file ``marker`` (harmless here)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _model():
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    return model, torch.optim.AdamW(model.parameters())


def _hostile(folder, marker):
    folder.mkdir(parents=True)
    (folder / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))


@pytest.mark.parametrize("name", ["elsewhere", "../elsewhere", "ABS"])
def test_a_sharded_name_other_than_kames_is_refused_before_any_file_is_read(tmp_path, name):
    marker = tmp_path / "ran"
    _hostile(tmp_path / "elsewhere", marker)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    name = str(tmp_path / "elsewhere") if name == "ABS" else name
    model, opt = _model()
    with pytest.raises(CheckpointError, match=r"train_state.pt names its sharded optimizer state .*elsewhere.*"
                                              r"'optimizer'.*trust"):
        load_optimizer(model, opt, {"sharded": name}, ckpt)
    assert not marker.exists()


def test_a_metadata_pickle_naming_other_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    _hostile(tmp_path / "ckpt" / SHARDED_OPTIMIZER, marker)
    model, opt = _model()
    # (open pickles as io.open or builtins.open, depending on what earlier tests imported)
    with pytest.raises(CheckpointError, match=r"optimizer/.metadata names [\w.]*open, which is not part of "
                                              r"torch.distributed.checkpoint's metadata"):
        load_optimizer(model, opt, {"sharded": SHARDED_OPTIMIZER}, tmp_path / "ckpt")
    assert not marker.exists()


def test_a_symlinked_optimizer_folder_is_refused(tmp_path):
    marker = tmp_path / "ran"
    _hostile(tmp_path / "elsewhere", marker)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / SHARDED_OPTIMIZER).symlink_to(tmp_path / "elsewhere")
    model, opt = _model()
    with pytest.raises(CheckpointError, match=r"ckpt/optimizer is a symlink; kame train writes a folder there"):
        load_optimizer(model, opt, {"sharded": SHARDED_OPTIMIZER}, tmp_path / "ckpt")
    assert not marker.exists()


def test_a_symlinked_optimizer_folder_inside_the_checkpoint_is_refused_as_a_symlink(tmp_path):
    """(review) refused too, but said to be a symlink, not one "leading out of the checkpoint's folder"."""
    marker = tmp_path / "ran"
    _hostile(tmp_path / "ckpt" / "real", marker)
    (tmp_path / "ckpt" / SHARDED_OPTIMIZER).symlink_to(tmp_path / "ckpt" / "real")
    model, opt = _model()
    with pytest.raises(CheckpointError) as caught:
        load_optimizer(model, opt, {"sharded": SHARDED_OPTIMIZER}, tmp_path / "ckpt")
    assert "ckpt/optimizer is a symlink; kame train writes a folder there" in str(caught.value)
    assert "leads out" not in str(caught.value) and "junction" not in str(caught.value)
    assert not marker.exists()


def test_a_link_is_symlink_does_not_see_is_refused_too(tmp_path, monkeypatch):
    """A Windows junction is no symlink to Path.is_symlink (Python 3.11), but Path.resolve
    follows it: the optimizer folder's resolved place must be inside the checkpoint's."""
    from pathlib import Path

    marker = tmp_path / "ran"
    _hostile(tmp_path / "elsewhere", marker)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / SHARDED_OPTIMIZER).symlink_to(tmp_path / "elsewhere")
    monkeypatch.setattr(Path, "is_symlink", lambda self: False)  # (as a junction looks on Windows)
    model, opt = _model()
    with pytest.raises(CheckpointError, match=r"ckpt/optimizer leads out of the checkpoint's folder, to "
                                              r"\S*elsewhere \(a junction\)"):
        load_optimizer(model, opt, {"sharded": SHARDED_OPTIMIZER}, tmp_path / "ckpt")
    assert not marker.exists()


def test_a_sharded_resume_unpickles_the_metadata_once(tmp_path, monkeypatch):
    """load_optimizer checks the .metadata before dcp.load, which then takes what the check read."""
    from kame.train import parallel

    model, opt = _model()
    model(torch.randn(3, 2)).sum().backward()
    opt.step()
    _saved_with(tmp_path / "ckpt", model, opt, lambda state: None)
    reads, real = [], parallel._metadata_unpickler
    monkeypatch.setattr(parallel, "_metadata_unpickler", lambda file, path: reads.append(path) or real(file, path))
    fresh, fresh_opt = _model()
    load_optimizer(fresh, fresh_opt, {"sharded": SHARDED_OPTIMIZER}, tmp_path / "ckpt")
    assert len(reads) == 1
    assert fresh_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


def test_a_sharded_optimizer_state_torch_wrote_still_loads(tmp_path):
    model, opt = _model()
    model(torch.randn(3, 2)).sum().backward()
    opt.step()
    _saved_with(tmp_path / "ckpt", model, opt, lambda state: None)
    fresh, fresh_opt = _model()
    load_optimizer(fresh, fresh_opt, {"sharded": SHARDED_OPTIMIZER}, tmp_path / "ckpt")
    saved, got = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert set(saved) == set(got)
    for k in saved:
        assert torch.equal(saved[k]["exp_avg"], got[k]["exp_avg"]) and int(got[k]["step"]) == 1


def _saved_with(folder, model, opt, edit):
    """A sharded optimizer state torch wrote for ``opt`` to folder/optimizer, after ``edit(state)``
    (as a crafted checkpoint's: torch itself writes any value that is not a tensor as a pickle)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(model, opt)
    edit(state)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        dcp.save(state, checkpoint_id=folder / SHARDED_OPTIMIZER)


def test_a_value_pickled_in_a_data_file_naming_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    model, opt = _model()
    _saved_with(tmp_path / "ckpt", model, opt, lambda s: s["param_groups"][0].update(lr=_Payload(marker)))
    fresh, fresh_opt = _model()
    with pytest.raises(CheckpointError, match=r"optimizer/__0_0.distcp holds param_groups.*lr as a pickle that "
                                              r"names [\w.]*open.*trust"):
        load_optimizer(fresh, fresh_opt, {"sharded": SHARDED_OPTIMIZER}, tmp_path / "ckpt")
    assert not marker.exists()


def test_a_tensor_saved_as_a_pickle_is_refused(tmp_path):
    model, opt = _model()
    model(torch.randn(3, 2)).sum().backward()
    opt.step()
    _saved_with(tmp_path / "ckpt", model, opt, lambda s: s["state"]["weight"].update(exp_avg=[0.0] * 4))
    fresh, fresh_opt = _model()
    with pytest.raises(CheckpointError, match=r"optimizer/__0_0.distcp holds state.weight.exp_avg as a pickle, "
                                              r"not a tensor.*trust"):
        load_optimizer(fresh, fresh_opt, {"sharded": SHARDED_OPTIMIZER}, tmp_path / "ckpt")
