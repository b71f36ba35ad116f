import pickle

import numpy as np
import pytest
import torch

from robustkit.checkpoint import CheckpointError, load_model, save_model
from robustkit.data import available_datasets, load_dataset
from robustkit.models import Normalize, available_models, create_model, model_for_dataset

from _helpers import data_root, fashion_available


def test_digits_in_input_space(digits):
    assert digits.x_train.shape[1:] == (1, 8, 8) and digits.num_classes == 10
    assert 0 <= float(digits.x_train.min()) and float(digits.x_train.max()) <= 1
    assert digits.x_train.shape[0] + digits.x_test.shape[0] == 1797
    assert digits.spec()["input_shape"] == [1, 8, 8]


def test_split_is_deterministic_by_seed(digits):
    a = digits.split_validation(0.2, seed=1)
    b = digits.split_validation(0.2, seed=1)
    c = digits.split_validation(0.2, seed=2)
    assert torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    assert a[0].x_train.shape[0] + a[1].shape[0] == digits.x_train.shape[0]


def test_limit():
    ds = load_dataset("digits", limit=50)
    assert ds.x_train.shape[0] == 50 and ds.x_test.shape[0] == 50


def test_mnist_from_shared_data():
    root = data_root()
    if root is None:
        pytest.skip("no $ROBUSTKIT_DATA / ../shared/data")
    ds = load_dataset("mnist", data_dir=root)
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.y_train.dtype == torch.int64 and int(ds.y_train.max()) == 9


def test_fashion_mnist():
    if not fashion_available():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    ds = load_dataset("fashion-mnist", data_dir=data_root(), limit=100)
    assert ds.class_names[0] == "T-shirt/top" and ds.x_test.shape == (100, 1, 28, 28)


def test_npz_dataset(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "d.npz"
    np.savez(p, x=rng.random((50, 6, 6, 3)).astype(np.float32), y=rng.integers(0, 3, 50))
    ds = load_dataset("npz", data_dir=p)
    assert ds.input_shape == (3, 6, 6) and ds.num_classes == 3
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 50
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="must hold arrays 'x' and 'y'"):
        load_dataset("npz", data_dir=bad)
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(ValueError, match="without pickled objects"):
        load_dataset("npz", data_dir=obj)


def test_image_folder(tmp_path):
    from PIL import Image
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(np.full((10, 10, 3), i * 40 + (cls == "dog") * 20, dtype=np.uint8)).save(
                tmp_path / cls / f"{i}.png")
    ds = load_dataset("image-folder", data_dir=tmp_path)
    assert ds.class_names == ["cat", "dog"] and ds.input_shape == (3, 10, 10)


def test_cifar_batches_refuse_code(tmp_path):
    def batch(n):
        return {b"data": np.zeros((n, 3072), dtype=np.uint8), b"labels": [1] * n}
    for i in range(1, 6):
        (tmp_path / f"data_batch_{i}").write_bytes(pickle.dumps(batch(4)))
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch(2)))
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (2, 3, 32, 32)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_registries_list_everything():
    assert {"digits", "mnist", "fashion-mnist", "cifar10", "npz", "image-folder"} <= set(available_datasets())
    assert {"mlp", "small-cnn", "madry-cnn", "lenet", "preact-resnet18", "wide-resnet"} <= set(available_models())


@pytest.mark.parametrize("name", sorted(available_models()))
@pytest.mark.parametrize("shape, classes", [((1, 8, 8), 10), ((1, 28, 28), 10), ((3, 32, 32), 7)])
def test_every_model_adapts(name, shape, classes):
    kwargs = {"depth": 10, "width": 1} if name == "wide-resnet" else {}
    m = create_model(name, input_shape=shape, num_classes=classes, **kwargs).eval()
    assert isinstance(m[0], Normalize)
    assert m(torch.rand(2, *shape)).shape == (2, classes)


def test_wong_cnn_width_scales_every_layer():
    sizes = {w: sum(p.numel() for p in create_model("wong-cnn", input_shape=(1, 28, 28), num_classes=10,
                                                    width=w).parameters()) for w in (1, 2)}
    assert sizes[1] == 166406  # Wong, Rice & Kolter's MNIST network
    assert 3.5 * sizes[1] < sizes[2] < 4.5 * sizes[1]  # conv and fc weights grow with width squared
    with pytest.raises(ValueError, match="'width' parameter of wong-cnn"):
        create_model("wong-cnn", input_shape=(1, 28, 28), num_classes=10, width=0)


def test_normalize_inside_model(digits):
    m = model_for_dataset("mlp", digits)
    assert torch.allclose(m[0](torch.full((1, 1, 8, 8), digits.mean[0])), torch.zeros(1, 1, 8, 8), atol=1e-6)
    raw = model_for_dataset("mlp", digits, normalize=False)
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(raw[0](x), x)
    with pytest.raises(TypeError, match="'normalize' parameter"):
        model_for_dataset("mlp", digits, normalize="no")


def test_checkpoint_roundtrip_and_atomicity(tmp_path, digits, digits_model):
    path = tmp_path / "m.safetensors"
    save_model(path, digits_model, data=digits.spec(), method={"name": "standard"})
    loaded, meta = load_model(path)
    x = digits.x_test[:16]
    assert torch.equal(loaded(x), digits_model(x))
    assert meta["data"]["name"] == "digits" and len(meta["sha256"]) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary files left behind
    with pytest.raises(CheckpointError, match="holds no best.safetensors"):
        load_model(tmp_path)
