"""Dataset loaders and their registry. Every loader returns a :class:`Dataset` in input space."""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .dataset import Dataset
from .idx import read_idx
from .registry import register_dataset

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SYSTEM_DIRS = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"]}
INSTALL_HINTS = {
    "fashion-mnist": "On Debian/Ubuntu: `apt-get install dataset-fashion-mnist` (files land in "
                     "/usr/share/datasets/fashion-mnist), or `pip install robustkit[vision]` to let torchvision "
                     "download them, or pass --data-dir with the four IDX files.",
    "mnist": "Pass --data-dir (or set $ROBUSTKIT_DATA) to a folder holding the four official IDX files "
             "(train-images-idx3-ubyte[.gz], ...), or `pip install robustkit[vision]` to let torchvision download them.",
    "cifar10": "Pass --data-dir to the extracted 'cifar-10-batches-py' folder, or `pip install robustkit[vision]`.",
}


def _candidate_dirs(name: str, data_dir) -> list[Path]:
    """--data-dir, then $ROBUSTKIT_DATA, then system locations; each also with a sub-folder named like the dataset."""
    roots = [Path(p) for p in (data_dir, os.environ.get("ROBUSTKIT_DATA")) if p]
    out: list[Path] = []
    for root in roots:
        out += [root, root / name, root / name.replace("-", "_")]
    out += [Path(p) for p in SYSTEM_DIRS.get(name, [])]
    return out


def _find_idx(folder: Path, stem: str) -> Path | None:
    for suffix in ("", ".gz"):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()))


def _load_idx_dataset(name: str, data_dir, class_names: list[str], mean, std) -> Dataset:
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    tried = _candidate_dirs(name, data_dir)
    for folder in tried:
        paths = [_find_idx(folder, s) for s in stems]
        if all(paths):
            xtr, ytr, xte, yte = (read_idx(p, expected_dims=3 if i % 2 == 0 else 1) for i, p in enumerate(paths))
            if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
                raise ValueError(f"{name} files in {folder} disagree: {xtr.shape[0]} training images but "
                                 f"{ytr.shape[0]} labels, {xte.shape[0]} test images but {yte.shape[0]} labels.")
            to_x = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)  # noqa: E731
            to_y = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
            return Dataset(name, to_x(xtr), to_y(ytr), to_x(xte), to_y(yte), class_names, mean, std,
                           extra={"source": str(folder)})
    tv = _from_torchvision(name, data_dir, class_names, mean, std)
    if tv is not None:
        return tv
    raise FileNotFoundError(f"Could not find the {name} IDX files. Looked in: "
                            f"{', '.join(str(t) for t in tried) or '(no folder given)'}. {INSTALL_HINTS[name]}")


def _from_torchvision(name, data_dir, class_names, mean, std) -> Dataset | None:
    try:
        import torchvision.datasets as tvd  # optional extra
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    root = str(data_dir or os.environ.get("ROBUSTKIT_DATA") or Path.home() / ".cache" / "robustkit")
    parts = []
    for train in (True, False):
        d = cls(root, train=train, download=True)
        data = torch.as_tensor(np.asarray(d.data))
        x = data.float().div(255)
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
        parts += [x.contiguous(), torch.as_tensor(np.asarray(d.targets), dtype=torch.int64)]
    return Dataset(name, *parts, class_names, mean, std, extra={"source": f"torchvision:{root}"})


@register_dataset("digits", "scikit-learn's bundled 8x8 digits (1,797 images; the embedded default)")
def _digits(*, data_dir=None, seed=0) -> Dataset:
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    # A fixed split (independent of the run's seed) so test numbers are comparable across runs.
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_test = 360
    te, tr = perm[:n_test], perm[n_test:]
    mean, std = _stats(x[tr])
    return Dataset("digits", x[tr], y[tr], x[te], y[te], [str(i) for i in range(10)], mean, std,
                   extra={"source": "sklearn.datasets.load_digits"})


@register_dataset("mnist", "MNIST handwritten digits (IDX files; --data-dir or $ROBUSTKIT_DATA)")
def _mnist(*, data_dir=None, seed=0) -> Dataset:
    return _load_idx_dataset("mnist", data_dir, [str(i) for i in range(10)], (0.1307,), (0.3081,))


@register_dataset("fashion-mnist", "Fashion-MNIST (IDX files; also /usr/share/datasets/fashion-mnist)")
def _fashion(*, data_dir=None, seed=0) -> Dataset:
    return _load_idx_dataset("fashion-mnist", data_dir, FASHION_CLASSES, (0.2860,), (0.3530,))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR-10's python batches are pickles; allow only the numpy array reconstruction they need.

    Anything else (the way a malicious pickle runs code) is refused.
    """

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file: "
                                     "only numpy arrays are allowed")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        d = _NumpyOnlyUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(d[b"labels"], dtype=np.int64)
    return data, labels


@register_dataset("cifar10", "CIFAR-10 (python batches folder, or torchvision)")
def _cifar10(*, data_dir=None, seed=0) -> Dataset:
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    tried = _candidate_dirs("cifar10", data_dir)
    tried += [t / "cifar-10-batches-py" for t in list(tried)]
    for folder in tried:
        if (folder / "data_batch_1").is_file() and (folder / "test_batch").is_file():
            train = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)
                     if (folder / f"data_batch_{i}").is_file()]
            xtr = np.concatenate([t[0] for t in train])
            ytr = np.concatenate([t[1] for t in train])
            xte, yte = _read_cifar_batch(folder / "test_batch")
            f = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)  # noqa: E731
            return Dataset("cifar10", f(xtr), torch.from_numpy(ytr), f(xte), torch.from_numpy(yte), CIFAR10_CLASSES,
                           mean, std, extra={"source": str(folder)})
    tv = _from_torchvision("cifar10", data_dir, CIFAR10_CLASSES, mean, std)
    if tv is not None:
        return tv
    raise FileNotFoundError(f"Could not find CIFAR-10 batches. Looked in: {', '.join(map(str, tried))}. "
                            f"{INSTALL_HINTS['cifar10']}")


def _require_path(name: str, data_dir) -> Path:
    if not data_dir:
        raise ValueError(f"The 'data_dir' parameter of load_dataset must name the {name} source for dataset "
                         f"{name!r}. Got {data_dir!r} instead.")
    path = Path(data_dir)
    if not path.exists():
        raise FileNotFoundError(f"The 'data_dir' parameter of load_dataset must be an existing path for dataset "
                                f"{name!r}. Got {str(path)!r}, which does not exist.")
    return path


def _split_xy(x: np.ndarray, y: np.ndarray, seed: int, test_fraction: float = 0.2):
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = max(1, int(round(len(y) * test_fraction)))
    return perm[n_test:], perm[:n_test]


def _as_nchw(x: np.ndarray, source: str) -> torch.Tensor:
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{source}: 'x' must be a numeric array. Got dtype {x.dtype} instead.")
    t = torch.from_numpy(np.ascontiguousarray(x)).float()
    if x.dtype == np.uint8:
        t = t / 255.0
    if t.dim() == 2:  # flat features: (N, D) -> (N, 1, 1, D) keeps one layout for every model
        t = t[:, None, None, :]
    elif t.dim() == 3:
        t = t.unsqueeze(1)
    elif t.dim() == 4 and t.shape[-1] in (1, 3) and t.shape[1] not in (1, 3):
        t = t.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    if t.dim() != 4:
        raise ValueError(f"{source}: 'x' must have 2, 3 or 4 dimensions. Got shape {tuple(x.shape)} instead.")
    if not torch.isfinite(t).all():
        raise ValueError(f"{source}: 'x' contains NaN or Inf values.")
    return t


def _labels(y: np.ndarray, source: str) -> tuple[torch.Tensor, list[str]]:
    if y.ndim != 1:
        raise ValueError(f"{source}: 'y' must be a 1-D array of labels. Got shape {tuple(y.shape)} instead.")
    classes, inv = np.unique(y, return_inverse=True)
    return torch.from_numpy(inv.astype(np.int64)), [str(c) for c in classes]


@register_dataset("npz", "any .npz with 'x' and 'y' arrays (optionally x_test/y_test); --data-dir is the file")
def _npz(*, data_dir=None, seed=0) -> Dataset:
    path = _require_path("npz", data_dir)
    try:
        # Materialize every array now: numpy reads lazily, and a pickled object array fails on access.
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError) as err:
        raise ValueError(f"{path} is not a readable .npz file without pickled objects ({err}).") from None
    missing = {"x", "y"} - set(arrays)
    if missing:
        raise ValueError(f"{path} must hold arrays 'x' and 'y'. Missing: {sorted(missing)}; found {sorted(arrays)}.")
    x, (y, classes) = _as_nchw(arrays["x"], str(path)), _labels(arrays["y"], str(path))
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: 'x' has {x.shape[0]} samples but 'y' has {y.shape[0]}.")
    if "x_test" in arrays and "y_test" in arrays:
        xte = _as_nchw(arrays["x_test"], str(path))
        yte = torch.from_numpy(np.searchsorted(np.array(classes), arrays["y_test"].astype(str)).astype(np.int64))
        xtr, ytr = x, y
    else:
        tr, te = _split_xy(arrays["x"], arrays["y"], seed)
        xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
    lo, hi = float(min(xtr.min(), xte.min())), float(max(xtr.max(), xte.max()))
    bounds = (0.0, 1.0) if lo >= 0 and hi <= 1 else (lo, hi)
    mean, std = _stats(xtr)
    return Dataset("npz", xtr, ytr, xte, yte, classes, mean, std, bounds, extra={"source": str(path)})


@register_dataset("image-folder", "a folder with one sub-folder of images per class; --data-dir is the folder")
def _image_folder(*, data_dir=None, seed=0) -> Dataset:
    from PIL import Image  # pillow comes with matplotlib
    root = _require_path("image-folder", data_dir)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root} must hold one sub-folder per class. Found none.")
    xs, ys, size, mode = [], [], None, None
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.suffix.lower() not in {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}:
                continue
            with Image.open(f) as im:
                mode = mode or ("L" if im.mode in ("L", "1", "I;16") else "RGB")
                im = im.convert(mode)
                size = size or im.size
                if im.size != size:
                    im = im.resize(size)
                xs.append(np.asarray(im, dtype=np.uint8))
                ys.append(label)
    if not xs:
        raise ValueError(f"{root}: no images found in the class folders {classes}.")
    x = _as_nchw(np.stack(xs), str(root))
    y = torch.tensor(ys, dtype=torch.int64)
    tr, te = _split_xy(x.numpy(), y.numpy(), seed)
    mean, std = _stats(x[tr])
    return Dataset("image-folder", x[tr], y[tr], x[te], y[te], classes, mean, std, extra={"source": str(root)})
