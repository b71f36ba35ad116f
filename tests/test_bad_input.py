"""Bad input ends in a clear error that names the argument."""
import gzip
import struct

import numpy as np
import pytest
import torch

from robustkit import ThreatModel, attacks
from robustkit.checkpoint import CheckpointError, load_model
from robustkit.data import IDXFormatError, load_dataset, read_idx
from robustkit.models import create_model


@pytest.fixture()
def pgd():
    return attacks.create("pgd", ThreatModel("linf", 0.1), steps=2)


def test_nan_inputs(pgd, digits_model, tiny_batch):
    x, y = tiny_batch
    x[3, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"'x' parameter of pgd must contain only finite values.*1 of 32"):
        pgd(digits_model, x, y)


def test_inf_inputs(pgd, digits_model, tiny_batch):
    x, y = tiny_batch
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="finite"):
        pgd(digits_model, x, y)


def test_inputs_outside_bounds(pgd, digits_model, tiny_batch):
    x, y = tiny_batch
    with pytest.raises(ValueError, match=r"'x' parameter of pgd must lie inside .*bounds \[0.0, 1.0\].*Normalize"):
        pgd(digits_model, x * 255, y)


def test_batch_size_mismatch(pgd, digits_model, tiny_batch):
    x, y = tiny_batch
    with pytest.raises(ValueError, match=r"'y' parameter of pgd must have shape \(32,\).*Got shape \(31,\)"):
        pgd(digits_model, x, y[:31])


def test_labels_outside_classes(pgd, digits_model, tiny_batch):
    x, y = tiny_batch
    y[0] = 10
    with pytest.raises(ValueError, match=r"'y' parameter of pgd must hold class indices in \[0, 9\]"):
        pgd(digits_model, x, y)


def test_float_labels(pgd, digits_model, tiny_batch):
    x, y = tiny_batch
    with pytest.raises(TypeError, match="'y' parameter of pgd must be an integer tensor"):
        pgd(digits_model, x, y.float())


def test_integer_images(pgd, digits_model, tiny_batch):
    x, y = tiny_batch
    with pytest.raises(TypeError, match="'x' parameter of pgd must be a floating-point tensor"):
        pgd(digits_model, (x * 255).to(torch.uint8), y)


def test_negative_eps():
    with pytest.raises(ValueError, match=r"'eps' parameter of ThreatModel must be a number >= 0.0. Got -0.1"):
        attacks.create("pgd", ThreatModel("linf", -0.1))


@pytest.mark.parametrize("bad", [{"steps": 0}, {"steps": 2.5}, {"restarts": -1}, {"step_size": -1.0}])
def test_bad_attack_params(bad):
    with pytest.raises((ValueError, TypeError), match=f"'{next(iter(bad))}' parameter of pgd"):
        attacks.create("pgd", ThreatModel("linf", 0.1), **bad)


def test_unknown_attack_param():
    with pytest.raises(TypeError, match="Attack 'pgd' accepts: .*steps"):
        attacks.create("pgd", ThreatModel("linf", 0.1), stepz=3)


def test_unknown_names():
    with pytest.raises(ValueError, match=r"Unknown attack 'pgdd'. Did you mean 'pgd'"):
        attacks.create("pgdd", ThreatModel("linf", 0.1))
    with pytest.raises(ValueError, match=r"Unknown model 'small_cnn'. Did you mean 'small-cnn'"):
        create_model("small_cnn", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ValueError, match=r"Unknown dataset 'fashion_mnist'. Did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist")


def test_model_returning_wrong_shape(pgd, tiny_batch):
    x, y = tiny_batch
    with pytest.raises(ValueError, match="must return logits of shape"):
        pgd(lambda t: t.flatten(1).sum(1), x, y)


def _write_idx(path, arr, gz=False):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_idx_roundtrip_and_truncation(tmp_path):
    arr = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    for gz in (False, True):
        p = tmp_path / f"a{gz}.idx"
        _write_idx(p, arr, gz)
        assert np.array_equal(read_idx(p), arr)
    p = tmp_path / "t.idx"
    _write_idx(p, arr)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(IDXFormatError, match="truncated or corrupt"):
        read_idx(p)
    p.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(IDXFormatError, match="not an IDX file"):
        read_idx(p)
    p.write_bytes(gzip.compress(b"x" * 100)[:20])
    with pytest.raises(IDXFormatError, match="damaged gzip"):
        read_idx(p)


def test_truncated_idx_in_dataset_folder(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2))
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.x_train.shape == (4, 1, 28, 28)
    raw = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(IDXFormatError, match="t10k-images.*truncated"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("ROBUSTKIT_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="Could not find the mnist IDX files.*--data-dir"):
        load_dataset("mnist", data_dir=tmp_path)


def test_foreign_checkpoints(tmp_path):
    from safetensors.torch import save_file
    p = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(CheckpointError, match="not a robustkit checkpoint"):
        load_model(p)
    p2 = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, p2)  # a pickle: must be refused, never unpickled
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_model(p2)
    p3 = tmp_path / "empty.safetensors"
    p3.write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_model(p3)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")
