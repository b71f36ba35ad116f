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
            for label_file, labels in ((paths[1], ytr), (paths[3], yte)):
                _check_idx_labels(label_file, labels, class_names)
            to_x = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)  # noqa: E731
            to_y = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
            return Dataset(name, to_x(xtr), to_y(ytr), to_x(xte), to_y(yte), class_names, mean, std,
                           extra={"source": str(folder)})
    tv = _from_torchvision(name, data_dir, class_names, mean, std)
    if tv is not None:
        return tv
    raise FileNotFoundError(f"Could not find the {name} IDX files. Looked in: "
                            f"{', '.join(str(t) for t in tried) or '(no folder given)'}. {INSTALL_HINTS[name]}")


def _check_idx_labels(path: Path, labels: np.ndarray, class_names: list[str]) -> None:
    """Labels are class indices: a value outside [0, classes) would index garbage (or crash an attack later)."""
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= len(class_names):
        bad = lo if lo < 0 else hi
        where = int(np.flatnonzero(labels == bad)[0])
        raise ValueError(f"IDX label file {path} holds label {bad} (at index {where}), outside the "
                         f"{len(class_names)} classes [0, {len(class_names) - 1}] of this dataset. The file is "
                         "corrupt or belongs to another dataset.")


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


class RefusedPickleError(pickle.UnpicklingError, ValueError):
    """A CIFAR batch file holds something other than numpy arrays (or is not a pickle at all).

    A ValueError too, so the command line reports it as a user error (exit 2), not a traceback.
    """


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's python batches are pickles; allow only the numpy array reconstruction they need.

    Anything else (the way a malicious pickle runs code) is refused.
    """

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file: "
                                     "only numpy arrays are allowed")


def _convert_hint(path: Path) -> str:
    return ("If the file is genuine, convert it once, in a Python session you trust, to an .npz and load that "
            f"instead: d = pickle.load(open({str(path)!r}, 'rb'), encoding='bytes'); np.savez('cifar.npz', "
            "x=np.asarray(d[b'data']).reshape(-1, 3, 32, 32), y=np.asarray(d.get(b'labels', d.get(b'fine_labels')))); "
            "then --data npz --data-dir cifar.npz --data-option scale=255.")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            d = _NumpyOnlyUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise RefusedPickleError(f"CIFAR batch file {str(path)!r}: {err}. {_convert_hint(path)}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, UnicodeDecodeError) as err:
        raise RefusedPickleError(f"CIFAR batch file {str(path)!r} is not a readable python batch "
                                 f"({type(err).__name__}: {err}); it is truncated or not a CIFAR file.") from None
    if not isinstance(d, dict):
        raise RefusedPickleError(f"CIFAR batch file {str(path)!r} holds a {type(d).__name__}, not the dict of a "
                                 "python batch.")
    return d


def _read_cifar_batch(path: Path, label_key: bytes = b"labels") -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    missing = [k.decode() for k in (b"data", label_key) if k not in d]
    if missing:
        raise RefusedPickleError(f"CIFAR batch file {str(path)!r} has no {missing} entry (it has "
                                 f"{sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d)}).")
    try:
        data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[label_key], dtype=np.int64).reshape(-1)
    except (ValueError, TypeError) as err:
        raise RefusedPickleError(f"CIFAR batch file {str(path)!r} holds arrays of the wrong shape ({err}); "
                                 "expected 'data' (N, 3072) uint8 and N labels.") from None
    if data.shape[0] != labels.shape[0]:
        raise RefusedPickleError(f"CIFAR batch file {str(path)!r} holds {data.shape[0]} images but "
                                 f"{labels.shape[0]} labels.")
    return data, labels


def _check_class_range(path: Path, labels: np.ndarray, num_classes: int) -> None:
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise ValueError(f"CIFAR batch file {str(path)!r} holds label {bad}, outside the {num_classes} classes "
                         f"[0, {num_classes - 1}].")


@register_dataset("cifar10", "CIFAR-10 (python batches folder, or torchvision)")
def _cifar10(*, data_dir=None, seed=0) -> Dataset:
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    tried = _candidate_dirs("cifar10", data_dir)
    tried += [t / "cifar-10-batches-py" for t in list(tried)]
    for folder in tried:
        if (folder / "data_batch_1").is_file() and (folder / "test_batch").is_file():
            files = [folder / f"data_batch_{i}" for i in range(1, 6) if (folder / f"data_batch_{i}").is_file()]
            train = [_read_cifar_batch(f) for f in files]
            xte, yte = _read_cifar_batch(folder / "test_batch")
            for f, (_, labels) in zip(files + [folder / "test_batch"], train + [(xte, yte)]):
                _check_class_range(f, labels, 10)
            xtr = np.concatenate([t[0] for t in train])
            ytr = np.concatenate([t[1] for t in train])
            f = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)  # noqa: E731
            return Dataset("cifar10", f(xtr), torch.from_numpy(ytr), f(xte), torch.from_numpy(yte), CIFAR10_CLASSES,
                           mean, std, extra={"source": str(folder)})
    tv = _from_torchvision("cifar10", data_dir, CIFAR10_CLASSES, mean, std)
    if tv is not None:
        return tv
    raise FileNotFoundError(f"Could not find CIFAR-10 batches. Looked in: {', '.join(map(str, tried))}. "
                            f"{INSTALL_HINTS['cifar10']}")


@register_dataset("cifar100", "CIFAR-100 (the extracted 'cifar-100-python' folder: train, test, meta); "
                              "labels=fine (100 classes, default) or coarse (20)")
def _cifar100(*, data_dir=None, seed=0, labels: str = "fine") -> Dataset:
    from .._validation import check_choice
    check_choice(labels, "labels", ("fine", "coarse"), owner="cifar100")
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    tried = _candidate_dirs("cifar100", data_dir)
    tried += [t / "cifar-100-python" for t in list(tried)]
    key = f"{labels}_labels".encode()
    n_classes = 100 if labels == "fine" else 20
    for folder in tried:
        if (folder / "train").is_file() and (folder / "test").is_file():
            names = [str(i) for i in range(n_classes)]
            if (folder / "meta").is_file():
                meta = _unpickle(folder / "meta")
                raw = meta.get(f"{labels}_label_names".encode())
                if isinstance(raw, (list, tuple)) and len(raw) == n_classes:
                    names = [v.decode() if isinstance(v, bytes) else str(v) for v in raw]
            (xtr, ytr), (xte, yte) = (_read_cifar_batch(folder / s, key) for s in ("train", "test"))
            _check_class_range(folder / "train", ytr, n_classes)
            _check_class_range(folder / "test", yte, n_classes)
            f = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)  # noqa: E731
            return Dataset("cifar100", f(xtr), torch.from_numpy(ytr), f(xte), torch.from_numpy(yte), names,
                           mean, std, extra={"source": str(folder), "labels": labels})
    raise FileNotFoundError(f"Could not find the CIFAR-100 python files (train, test, meta). Looked in: "
                            f"{', '.join(map(str, tried)) or '(no folder given)'}. Pass --data-dir to the extracted "
                            "'cifar-100-python' folder.")


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


def _as_nchw(x: np.ndarray, source: str, key: str = "x") -> torch.Tensor:
    """(N, D) / (N, H, W) / NCHW / NHWC numbers -> an NCHW float tensor, values as stored (no scaling)."""
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{source}: '{key}' must be a numeric array. Got dtype {x.dtype} instead.")
    t = torch.from_numpy(np.ascontiguousarray(x.astype(np.float32, copy=False)))
    if t.dim() == 2:  # flat features: (N, D) -> (N, 1, 1, D) keeps one layout for every model
        t = t[:, None, None, :]
    elif t.dim() == 3:
        t = t.unsqueeze(1)
    elif t.dim() == 4 and t.shape[-1] in (1, 3) and t.shape[1] not in (1, 3):
        t = t.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    if t.dim() != 4:
        raise ValueError(f"{source}: '{key}' must have 2, 3 or 4 dimensions. Got shape {tuple(x.shape)} instead.")
    if not torch.isfinite(t).all():
        raise ValueError(f"{source}: '{key}' contains NaN or Inf values.")
    return t


def _parse_pair(value, name: str) -> tuple[float, float]:
    """``"0,255"`` / ``[0, 255]`` -> (0.0, 255.0), low < high."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        lo, hi = (float(v) for v in items)
    except (TypeError, ValueError):
        raise ValueError(f"The '{name}' data option must be two numbers LOW,HIGH (e.g. {name}=-1,1). "
                         f"Got {value!r} instead.") from None
    if not lo < hi:
        raise ValueError(f"The '{name}' data option must have LOW < HIGH. Got {value!r} instead.")
    return lo, hi


def _scale_and_check(tensors: dict[str, torch.Tensor], source: str, scale, bounds) -> tuple[float, float]:
    """Divide by ``scale`` when given, then insist the values lie in ``bounds`` (default [0, 1]).

    The range is checked, never guessed: 8-bit images stored as 0..255, or 4-bit digits as 0..16, would
    otherwise make every eps mean something else (or be silently shrunk by a wrong /255).
    """
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"The 'scale' data option must be a number > 0 (the value that maps to 1, e.g. "
                             f"scale=255). Got {scale!r} instead.")
        for k in tensors:
            tensors[k] = tensors[k] / float(scale)
    lo, hi = (0.0, 1.0) if bounds is None else _parse_pair(bounds, "bounds")
    for key, t in tensors.items():
        vmin, vmax = float(t.min()), float(t.max())
        if vmin < lo - 1e-6 or vmax > hi + 1e-6:
            got = f"[{vmin:g}, {vmax:g}]" + (f" after dividing by scale={scale}" if scale is not None else "")
            if scale is None and vmin >= 0 and vmax > 1:
                guess = next((s for s in (1, 15, 16, 255, 65535) if vmax <= s), vmax)
                hint = (f"Pass --data-option scale={guess:g} to divide by {guess:g} (255 for 8-bit images, 16 "
                        "for scikit-learn's 4-bit digits), or --data-option bounds=LOW,HIGH if that range is "
                        "the data's natural one.")
            else:
                hint = "Pass --data-option scale=S (divides by S) and/or --data-option bounds=LOW,HIGH."
            raise ValueError(f"{source}: '{key}' values span {got}, outside the input range [{lo:g}, {hi:g}] "
                             f"robustkit attacks in (eps is measured in that range). {hint}")
    return lo, hi


def _norm_labels(a: np.ndarray, source: str, key: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{source}: '{key}' must be a 1-D array of labels. Got shape {tuple(a.shape)} instead.")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{source}: '{key}' holds non-integer numbers; labels must be integers or strings.")
        a = a.astype(np.int64)
    elif a.dtype.kind == "S":
        a = a.astype(str)
    elif a.dtype.kind not in "iubU":
        raise ValueError(f"{source}: '{key}' must hold integer or string labels. Got dtype {a.dtype} instead.")
    return a


def _sorted_classes(values: np.ndarray) -> list[str]:
    """Sorted label values as strings: numbers in numeric order (2 before 10), else lexical order."""
    uniq = [str(v) for v in np.unique(values)]
    try:
        return sorted(uniq, key=float)
    except ValueError:
        return sorted(uniq)


def class_list(y_train: np.ndarray, y_test: np.ndarray | None, source: str, classes=None, *,
               train_key: str = "y", test_key: str = "y_test") -> tuple[list[str], torch.Tensor, torch.Tensor | None]:
    """One explicit, sorted, validated class list and both label arrays mapped through it.

    ``classes`` (a list, or a comma-separated string) fixes the list and its order; by default it is the
    sorted set of training labels. A label that is not in the list (e.g. one seen only in the test
    split) is an error naming it, never a silently wrong index.
    """
    y_train = _norm_labels(y_train, source, train_key)
    if classes is not None:
        names = [s.strip() for s in classes.split(",")] if isinstance(classes, str) else [str(c) for c in classes]
        if len(set(names)) != len(names) or any(not n for n in names):
            raise ValueError(f"The 'classes' data option must list distinct, non-empty class labels. Got {classes!r} "
                             "instead.")
        origin = "the 'classes' option"
    else:
        names = _sorted_classes(y_train)
        origin = f"the sorted labels of '{train_key}'"
    if len(names) < 2:
        raise ValueError(f"{source}: '{train_key}' holds a single class {names}; a classifier needs at least two.")
    index = {n: i for i, n in enumerate(names)}

    def to_ids(a: np.ndarray, key: str) -> torch.Tensor:
        as_str = np.asarray([str(v) for v in a.tolist()])
        unknown = sorted(set(as_str.tolist()) - set(index))
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise ValueError(f"{source}: '{key}' holds label(s) {shown} not in the class list ({origin}: "
                             f"{names[:20]}{' ...' if len(names) > 20 else ''}). Every label must be a known "
                             "class; pass --data-option classes=A,B,... to list all classes in order.")
        return torch.tensor([index[v] for v in as_str.tolist()], dtype=torch.int64)

    y_te = None if y_test is None else to_ids(_norm_labels(y_test, source, test_key), test_key)
    return names, to_ids(y_train, train_key), y_te


def _array_dataset(name: str, source: str, arrays: dict[str, np.ndarray], *, seed: int, scale, bounds, classes,
                   keys: dict[str, str]) -> Dataset:
    """x / y (and optional x_test / y_test) arrays -> a Dataset, ranges and labels checked."""
    kx, ky, kxt, kyt = keys["x"], keys["y"], keys["x_test"], keys["y_test"]
    missing = {kx, ky} - set(arrays)
    if missing:
        raise ValueError(f"{source} must hold arrays {kx!r} and {ky!r}. Missing: {sorted(missing)}; found "
                         f"{sorted(arrays)}. Name other arrays with --data-option x_key=... / y_key=....")
    has_test = kxt in arrays and kyt in arrays
    if (kxt in arrays) != (kyt in arrays):
        raise ValueError(f"{source} holds only one of {kxt!r} and {kyt!r}; give both, or neither (then 20% of "
                         f"{kx!r} is held out for evaluation).")
    x = _as_nchw(arrays[kx], source, kx)
    names, y, y_test = class_list(arrays[ky], arrays[kyt] if has_test else None, source, classes,
                                  train_key=ky, test_key=kyt)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{source}: {kx!r} has {x.shape[0]} samples but {ky!r} has {y.shape[0]}.")
    tensors = {kx: x}
    if has_test:
        xte = _as_nchw(arrays[kxt], source, kxt)
        if xte.shape[0] != y_test.shape[0]:
            raise ValueError(f"{source}: {kxt!r} has {xte.shape[0]} samples but {kyt!r} has {y_test.shape[0]}.")
        if xte.shape[1:] != x.shape[1:]:
            raise ValueError(f"{source}: {kxt!r} has samples of shape {tuple(xte.shape[1:])} but {kx!r} has "
                             f"{tuple(x.shape[1:])}.")
        tensors[kxt] = xte
    bounds = _scale_and_check(tensors, source, scale, bounds)
    x = tensors[kx]
    if has_test:
        xtr, ytr, xte, yte = x, y, tensors[kxt], y_test
    else:
        tr, te = _split_xy(x.numpy(), y.numpy(), seed)
        xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
    mean, std = _stats(xtr)
    return Dataset(name, xtr, ytr, xte, yte, names, mean, std, bounds,
                   extra={"source": source, **({"scale": scale} if scale is not None else {})})


def _keys(x_key, y_key, x_test_key, y_test_key) -> dict[str, str]:
    return {"x": str(x_key), "y": str(y_key), "x_test": str(x_test_key), "y_test": str(y_test_key)}


@register_dataset("npz", "any .npz with 'x' and 'y' arrays (optionally x_test/y_test); --data-dir is the file; "
                         "options x_key, y_key, x_test_key, y_test_key, scale, bounds, classes")
def _npz(*, data_dir=None, seed=0, x_key: str = "x", y_key: str = "y", x_test_key: str = "x_test",
         y_test_key: str = "y_test", scale=None, bounds=None, classes=None) -> Dataset:
    """Arrays from one .npz file (never with pickled objects). Values must lie in [0, 1] (or ``bounds``)
    unless ``scale`` says what to divide by; labels map through one sorted class list (``classes``)."""
    path = _require_path("npz", data_dir)
    try:
        # Materialize every array now: numpy reads lazily, and a pickled object array fails on access.
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, AttributeError) as err:
        raise ValueError(f"{path} is not a readable .npz file without pickled objects ({err}).") from None
    return _array_dataset("npz", str(path), arrays, seed=seed, scale=scale, bounds=bounds, classes=classes,
                          keys=_keys(x_key, y_key, x_test_key, y_test_key))


@register_dataset("npy", "a folder of .npy files x.npy, y.npy (optionally x_test.npy, y_test.npy); --data-dir is "
                         "the folder; same options as npz (x_key=images reads images.npy)")
def _npy(*, data_dir=None, seed=0, x_key: str = "x", y_key: str = "y", x_test_key: str = "x_test",
         y_test_key: str = "y_test", scale=None, bounds=None, classes=None) -> Dataset:
    """One array per .npy file in a folder, named by the ``*_key`` options (file name without .npy)."""
    root = _require_path("npy", data_dir)
    if not root.is_dir():
        raise ValueError(f"The npy dataset's --data-dir must be a folder holding {x_key}.npy and {y_key}.npy. "
                         f"Got the file {str(root)!r} instead (a single .npz file is --data npz).")
    keys = _keys(x_key, y_key, x_test_key, y_test_key)
    arrays = {}
    for k in keys.values():
        f = root / f"{k}.npy"
        if f.is_file():
            try:
                arrays[k] = np.load(f, allow_pickle=False)
            except (ValueError, OSError) as err:
                raise ValueError(f"{f} is not a readable .npy file without pickled objects ({err}).") from None
    return _array_dataset("npy", str(root), arrays, seed=seed, scale=scale, bounds=bounds, classes=classes,
                          keys=keys)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@register_dataset("image-folder", "a folder with one sub-folder of images per class; --data-dir is the folder")
def _image_folder(*, data_dir=None, seed=0) -> Dataset:
    """8-bit images (scaled to [0, 1]); a file with an image suffix that is not an image is an error naming it."""
    from PIL import Image, UnidentifiedImageError  # pillow comes with matplotlib
    root = _require_path("image-folder", data_dir)
    if not root.is_dir():
        raise ValueError(f"The image-folder dataset's --data-dir must be a folder with one sub-folder per class. "
                         f"Got the file {str(root)!r} instead.")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise ValueError(f"{root} must hold one sub-folder per class (at least two). Found {classes or 'none'}.")
    xs, ys, size, mode = [], [], None, None
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    im.load()
                    mode = mode or ("L" if im.mode in ("L", "1", "I;16", "I", "F") else "RGB")
                    im = im.convert(mode)
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
                raise ValueError(f"{f} has an image suffix but is not a readable image ({type(err).__name__}: "
                                 f"{err}). Remove or replace it.") from None
            size = size or im.size
            if im.size != size:
                im = im.resize(size)
            xs.append(np.asarray(im, dtype=np.uint8))
            ys.append(label)
    if not xs:
        raise ValueError(f"{root}: no images found in the class folders {classes}.")
    x = _as_nchw(np.stack(xs), str(root)) / 255.0
    y = torch.tensor(ys, dtype=torch.int64)
    tr, te = _split_xy(x.numpy(), y.numpy(), seed)
    mean, std = _stats(x[tr])
    return Dataset("image-folder", x[tr], y[tr], x[te], y[te], classes, mean, std, extra={"source": str(root)})


@register_dataset("hf-images", "a Hugging Face datasets folder of images written by save_to_disk (pip install "
                               "datasets); image_column, label_column, train_split, test_split")
def _hf_images(*, data_dir=None, seed=0, image_column: str = "image", label_column: str = "label",
               train_split: str = "train", test_split: str | None = None) -> Dataset:
    """``datasets.load_from_disk(data_dir)``: 8-bit images (PIL images or uint8 arrays, scaled to [0, 1]) and
    integer class labels; class names from the label column's ClassLabel feature when it has one."""
    root = _require_path("hf-images", data_dir)
    try:
        import datasets as hf_datasets
    except ModuleNotFoundError as err:
        if err.name != "datasets":
            raise
        raise ModuleNotFoundError("The hf-images dataset needs the optional package 'datasets': pip install "
                                  "'robustkit[hf-datasets]' (or pip install datasets).") from None
    try:
        dd = hf_datasets.load_from_disk(str(root))
    except (OSError, ValueError) as err:
        raise ValueError(f"{root} is not a dataset folder written by save_to_disk ({err}).") from None
    splits = list(dd.keys()) if hasattr(dd, "keys") else []
    test_split = test_split or next((s for s in ("test", "validation", "dev") if s in splits), None)
    if train_split not in splits or test_split not in splits:
        raise ValueError(f"{root} has splits {splits or '(a single split)'}; pass --data-option train_split=... and "
                         "test_split=... naming a training and an evaluation split.")
    from PIL import Image
    arrays = {}
    for key, split in (("x", train_split), ("x_test", test_split)):
        ds = dd[split]
        for col in (image_column, label_column):
            if col not in ds.column_names:
                raise ValueError(f"Split {split!r} of {root} has no column {col!r}; its columns are "
                                 f"{list(ds.column_names)}. Pass --data-option image_column=/label_column=.")
        imgs = []
        for i, im in enumerate(ds[image_column]):
            if isinstance(im, Image.Image):
                im = np.asarray(im.convert("L" if im.mode in ("L", "1") else "RGB"))
            im = np.asarray(im)
            if im.dtype != np.uint8:
                raise ValueError(f"Row {i} of split {split!r} in {root}: images must be PIL images or uint8 arrays "
                                 f"(0..255). Got dtype {im.dtype}; for other ranges save x/y arrays as .npz.")
            imgs.append(im)
        shapes = {a.shape for a in imgs}
        if len(shapes) != 1:
            raise ValueError(f"Split {split!r} of {root} holds images of several sizes {sorted(shapes)[:4]}; "
                             "resize them to one size first.")
        arrays[key] = np.stack(imgs)
        arrays["y" if key == "x" else "y_test"] = np.asarray(list(ds[label_column]))
    feature = getattr(dd[train_split], "features", {}).get(label_column)
    names = list(getattr(feature, "names", None) or [])
    out = _array_dataset("hf-images", str(root), arrays, seed=seed, scale=255, bounds=None,
                         classes=[str(i) for i in range(len(names))] if names else None,
                         keys=_keys("x", "y", "x_test", "y_test"))
    if names:
        out.class_names = names
    return out
