"""Bring your own data: npz/npy with named arrays, checked value ranges, one sorted class list, image
folders, CIFAR-10/100 python batches (restricted unpickler), IDX label ranges, JSONL texts, Hugging Face
``save_to_disk`` folders (through a stand-in ``datasets`` module) -- and messages, not tracebacks, in the CLI."""
from __future__ import annotations

import json
import pickle
import struct
import sys
import types

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from robustkit.checkpoint import save_model
from robustkit.cli import app
from robustkit.data import load_dataset
from robustkit.data.loaders import RefusedPickleError
from robustkit.data.text import TextDataError

runner = CliRunner()


def _imgs(n, c=1, hw=4, high=1.0, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.random((n, c, hw, hw)) * high).astype(dtype)


# -- npz labels: one explicit, sorted, validated class list -----------------------------------------------
def test_npz_test_labels_follow_the_training_class_list_with_many_classes(tmp_path):
    """np.searchsorted on the string-sorted class names mapped 2..9 wrongly once there were >= 11 classes."""
    y = np.arange(120) % 12
    y_test = np.array([0, 1, 2, 9, 10, 11, 2, 5])
    p = tmp_path / "d.npz"
    np.savez(p, x=_imgs(120), y=y, x_test=_imgs(8, seed=1), y_test=y_test)
    ds = load_dataset("npz", data_dir=p)
    assert ds.class_names == [str(i) for i in range(12)]  # numeric order: 2 before 10
    assert ds.y_test.tolist() == y_test.tolist()
    assert ds.y_train.tolist() == y.tolist()


def test_npz_string_labels_and_explicit_class_order(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=_imgs(6), y=np.array(["dog", "cat", "dog", "cat", "bird", "bird"]), x_test=_imgs(2),
             y_test=np.array(["bird", "dog"]))
    ds = load_dataset("npz", data_dir=p)
    assert ds.class_names == ["bird", "cat", "dog"] and ds.y_test.tolist() == [0, 2]
    ds = load_dataset("npz", data_dir=p, classes="dog,cat,bird")
    assert ds.class_names == ["dog", "cat", "bird"] and ds.y_test.tolist() == [2, 0] and ds.y_train[0] == 0


@pytest.mark.parametrize("arrays,options,match", [
    ({"x": _imgs(6), "y": np.array([0, 1, 0, 1, 0, 1]), "x_test": _imgs(2), "y_test": np.array([1, 2])}, {},
     r"'y_test' holds label\(s\) '2' not in the class list"),
    ({"x": _imgs(4), "y": np.array(["a", "b", "a", "b"]), "x_test": _imgs(1), "y_test": np.array(["c"])}, {},
     r"label\(s\) 'c' not in the class list"),
    ({"x": _imgs(4), "y": np.array([0, 1, 0, 1])}, {"classes": "0,0"}, "distinct"),
    ({"x": _imgs(4), "y": np.array([0, 1, 0, 1])}, {"classes": "1,2"}, r"'y' holds label\(s\) '0'"),
    ({"x": _imgs(4), "y": np.array([0.5, 1, 0, 1])}, {}, "non-integer"),
    ({"x": _imgs(4), "y": np.zeros(4, dtype=int)}, {}, "single class"),
    ({"x": _imgs(4), "y": np.array([0, 1, 0, 1]), "x_test": _imgs(2)}, {}, "only one of 'x_test' and 'y_test'"),
    ({"x": _imgs(4), "y": np.array([0, 1, 0])}, {}, "'x' has 4 samples but 'y' has 3"),
    # value ranges: checked, never assumed
    ({"x": _imgs(4, high=16.0).round(), "y": np.array([0, 1, 0, 1])}, {}, r"span \[0, 16\].*scale=16"),
    ({"x": _imgs(4, high=255.0).astype(np.uint8), "y": np.array([0, 1, 0, 1])}, {}, "scale=255"),
    ({"x": _imgs(4, high=255.0), "y": np.array([0, 1, 0, 1])}, {"scale": 16}, "after dividing by scale=16"),
    ({"x": _imgs(4) - 0.5, "y": np.array([0, 1, 0, 1])}, {}, "bounds=LOW,HIGH"),
    ({"x": _imgs(4), "y": np.array([0, 1, 0, 1])}, {"scale": 0}, "'scale' data option must be a number > 0"),
    ({"x": _imgs(4), "y": np.array([0, 1, 0, 1])}, {"bounds": "1,0"}, "LOW < HIGH"),
    ({"images": _imgs(4), "y": np.array([0, 1, 0, 1])}, {}, "x_key="),
])
def test_npz_bad_inputs_are_named(tmp_path, arrays, options, match):
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    with pytest.raises(ValueError, match=match):
        load_dataset("npz", data_dir=p, **options)


def test_npz_scale_bounds_and_named_arrays(tmp_path):
    p = tmp_path / "d.npz"
    raw = _imgs(10, high=255.0).round().astype(np.uint8)
    np.savez(p, images=raw, labels=np.arange(10) % 2)
    ds = load_dataset("npz", data_dir=p, x_key="images", y_key="labels", scale=255)
    assert 0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1 and ds.bounds == (0.0, 1.0)
    assert ds.extra["scale"] == 255
    q = tmp_path / "e.npz"
    np.savez(q, x=_imgs(10) * 2 - 1, y=np.arange(10) % 2)
    ds = load_dataset("npz", data_dir=q, bounds="-1,1")
    assert ds.bounds == (-1.0, 1.0)


def test_npy_folder(tmp_path):
    np.save(tmp_path / "x.npy", _imgs(10))
    np.save(tmp_path / "y.npy", np.arange(10) % 2)
    np.save(tmp_path / "x_test.npy", _imgs(4, seed=2))
    np.save(tmp_path / "y_test.npy", np.array([1, 0, 1, 1]))
    ds = load_dataset("npy", data_dir=tmp_path)
    assert ds.x_train.shape == (10, 1, 4, 4) and ds.y_test.tolist() == [1, 0, 1, 1]
    with pytest.raises(ValueError, match="must hold arrays 'img' and 'y'"):
        load_dataset("npy", data_dir=tmp_path, x_key="img")
    with pytest.raises(ValueError, match="must be a folder"):
        load_dataset("npy", data_dir=tmp_path / "x.npy")


# -- image folders -------------------------------------------------------------------------------------------
def _image_folder(root):
    from PIL import Image
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((6, 6), 40 * i, dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_image_folder_non_image_png_is_named(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    ds = load_dataset("image-folder", data_dir=root)
    assert ds.class_names == ["cat", "dog"] and float(ds.x_train.max()) <= 1
    (root / "dog" / "notes.png").write_text("not an image at all")
    with pytest.raises(ValueError, match=r"notes.png has an image suffix but is not a readable image"):
        load_dataset("image-folder", data_dir=root)


# -- CIFAR python batches ---------------------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def _cifar10(folder, evil=False):
    folder.mkdir(parents=True, exist_ok=True)
    batch = lambda n: {b"data": np.zeros((n, 3072), dtype=np.uint8), b"labels": [1] * n}  # noqa: E731
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(2)))
    test = {b"data": _Evil(), b"labels": []} if evil else batch(2)
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    return folder


def test_cifar_refused_pickle_is_a_value_error_naming_file_and_conversion(tmp_path):
    folder = _cifar10(tmp_path / "c10", evil=True)
    with pytest.raises(RefusedPickleError) as info:
        load_dataset("cifar10", data_dir=folder)
    assert isinstance(info.value, ValueError) and isinstance(info.value, pickle.UnpicklingError)
    msg = str(info.value)
    assert "test_batch" in msg and "refusing to load builtins.print" in msg and "np.savez" in msg
    (folder / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(RefusedPickleError, match="test_batch"):
        load_dataset("cifar10", data_dir=folder)


def test_cifar100_fine_and_coarse_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, n in (("train", 6), ("test", 3)):
        (folder / split).write_bytes(pickle.dumps({b"data": np.zeros((n, 3072), dtype=np.uint8),
                                                   b"fine_labels": list(range(90, 90 + n)),
                                                   b"coarse_labels": [19] * n}))
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                                b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}))
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.num_classes == 100 and ds.class_names[95] == "f95" and ds.y_test.tolist() == [90, 91, 92]
    assert ds.x_train.shape == (6, 3, 32, 32)
    ds = load_dataset("cifar100", data_dir=folder, labels="coarse")
    assert ds.num_classes == 20 and ds.y_train.tolist() == [19] * 6
    (folder / "test").write_bytes(pickle.dumps({b"data": _Evil(), b"fine_labels": []}))
    with pytest.raises(RefusedPickleError, match="refusing to load builtins.print"):
        load_dataset("cifar100", data_dir=folder)


# -- IDX labels -----------------------------------------------------------------------------------------------
def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    path.write_bytes(struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
                     + arr.tobytes())


def _mnist(folder, test_labels):
    folder.mkdir(parents=True, exist_ok=True)
    _write_idx(folder / "train-images-idx3-ubyte", np.zeros((4, 28, 28)))
    _write_idx(folder / "train-labels-idx1-ubyte", [0, 1, 2, 3])
    _write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((len(test_labels), 28, 28)))
    _write_idx(folder / "t10k-labels-idx1-ubyte", test_labels)
    return folder


def test_idx_labels_outside_the_classes_are_named(tmp_path):
    folder = _mnist(tmp_path / "mnist", [1, 12])
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte holds label 12 \(at index 1\).*\[0, 9\]"):
        load_dataset("mnist", data_dir=folder)


# -- the CLI turns each of these into a one-line message (exit 2), not a traceback ------------------------------
@pytest.fixture()
def digits_ckpt(tmp_path, digits_model, digits):
    return save_model(tmp_path / "m.safetensors", digits_model, data=digits.spec(),
                      threat={"norm": "linf", "eps": 0.1, "bounds": [0, 1]})


def _bad_sources(tmp_path):
    png = _image_folder(tmp_path / "imgs")
    (png / "cat" / "broken.png").write_bytes(b"\x89PNG but cut short")
    npz = tmp_path / "big.npz"
    np.savez(npz, x=_imgs(6, c=1, hw=8, high=255.0), y=np.arange(6) % 2)
    return {
        "png": (["--data", "image-folder", "--data-dir", str(png)], "broken.png has an image suffix"),
        "cifar": (["--data", "cifar10", "--data-dir", str(_cifar10(tmp_path / "c10", evil=True))],
                  "refusing to load builtins.print"),
        "idx": (["--data", "mnist", "--data-dir", str(_mnist(tmp_path / "mnist", [3, 200]))], "holds label 200"),
        "range": (["--data", "npz", "--data-dir", str(npz)], "scale=255"),
        "option": (["--data", "npz", "--data-dir", str(npz), "--data-option", "colour=red"],
                   "'--data-option' option ['colour'] is not an option of dataset 'npz'"),
    }


@pytest.mark.parametrize("case", ["png", "cifar", "idx", "range", "option"])
def test_cli_reports_bad_data_without_a_traceback(tmp_path, digits_ckpt, case):
    args, match = _bad_sources(tmp_path)[case]
    res = runner.invoke(app, ["check", str(digits_ckpt), *args])
    assert res.exit_code == 2, res.output
    assert match in res.output and "Traceback" not in res.output


def test_cli_data_option_scale_reaches_the_loader(tmp_path, digits_ckpt):
    npz = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, x=rng.integers(0, 17, (40, 1, 8, 8)).astype(np.float32), y=np.arange(40) % 10)
    res = runner.invoke(app, ["check", str(digits_ckpt), "--data", "npz", "--data-dir", str(npz),
                              "--data-option", "scale=16", "--limit", "8"])
    assert res.exit_code in (0, 1) and "inputs_in_bounds" in res.output, res.output
    assert "PASS  inputs_in_bounds" in res.output


# -- texts: JSONL and Hugging Face save_to_disk --------------------------------------------------------------
def test_jsonl_text_dataset(tmp_path):
    rows = [{"review": f"text number {i}", "stars": ["low", "high"][i % 2]} for i in range(6)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "dev.jsonl").write_text(json.dumps({"review": "a dev text", "stars": "high"}) + "\n")
    ds = load_dataset("jsonl", data_dir=tmp_path, text_column="review", label_column="stars")
    assert ds.class_names == ["high", "low"] and ds.test_labels.tolist() == [0] and len(ds.train_texts) == 6
    (tmp_path / "dev.jsonl").write_text('{"review": "ok", "stars": "high"}\n{"review": broken\n')
    with pytest.raises(TextDataError, match=r"dev.jsonl:2 is not valid JSON"):
        load_dataset("jsonl", data_dir=tmp_path, text_column="review", label_column="stars")
    (tmp_path / "dev.jsonl").write_text('{"text": "ok", "stars": "high"}\n')
    with pytest.raises(TextDataError, match=r"dev.jsonl:1 has no field 'review'"):
        load_dataset("jsonl", data_dir=tmp_path, text_column="review", label_column="stars")


class _FakeSplit:
    """What robustkit uses of a ``datasets.Dataset``: column_names, features, column access."""

    def __init__(self, cols, names=None):
        self.cols = cols
        self.column_names = list(cols)
        self.features = {"label": types.SimpleNamespace(names=names)} if names else {}

    def __getitem__(self, key):
        return self.cols[key]


def test_hf_save_to_disk_folder_through_a_stand_in_datasets_module(tmp_path, monkeypatch):
    seen = {}

    def load_from_disk(path):
        seen["path"] = path
        return {"train": _FakeSplit({"text": ["good film", "bad film", "fine plot"], "label": [1, 0, 1]},
                                    names=["neg", "pos"]),
                "test": _FakeSplit({"text": ["dull plot"], "label": [0]}, names=["neg", "pos"])}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_from_disk=load_from_disk))
    ds = load_dataset("hf-disk", data_dir=tmp_path)
    assert seen["path"] == str(tmp_path) and ds.class_names == ["neg", "pos"]
    assert ds.train_labels.tolist() == [1, 0, 1] and ds.test_texts == ["dull plot"]
    with pytest.raises(TextDataError, match="no column 'sentence'"):
        load_dataset("hf-disk", data_dir=tmp_path, text_column="sentence")
    with pytest.raises(TextDataError, match="has splits"):
        load_dataset("hf-disk", data_dir=tmp_path, test_split="validation")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'robustkit\[hf-datasets\]'"):
        load_dataset("hf-disk", data_dir=tmp_path)


def test_new_loaders_are_listed():
    from robustkit.data import available_datasets
    assert {"npy", "cifar100", "jsonl", "hf-disk"} <= set(available_datasets())
    assert torch.is_tensor(load_dataset("digits").x_test)


def test_hf_image_folder_through_a_stand_in_datasets_module(tmp_path, monkeypatch):
    from PIL import Image
    img = lambda v: Image.fromarray(np.full((5, 5), v, dtype=np.uint8))  # noqa: E731
    splits = {"train": _FakeSplit({"image": [img(0), img(255), img(128)], "label": [0, 1, 1]}, names=["a", "b"]),
              "test": _FakeSplit({"image": [img(64)], "label": [1]}, names=["a", "b"])}
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_from_disk=lambda path: splits))
    ds = load_dataset("hf-images", data_dir=tmp_path)
    assert ds.class_names == ["a", "b"] and ds.x_train.shape == (3, 1, 5, 5) and float(ds.x_train.max()) == 1.0
    assert ds.y_test.tolist() == [1]
    with pytest.raises(ValueError, match="no column 'img'"):
        load_dataset("hf-images", data_dir=tmp_path, image_column="img")
