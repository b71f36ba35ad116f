"""Text datasets (SST-2 and generic CSV/TSV) and tokenized batches with dynamic padding.

Bad input is rejected at load time with the file and line: non-UTF-8 bytes, empty texts (or
skipped with ``on_empty="skip"``), labels outside the label set. Texts longer than ``max_length``
tokens are truncated with one logged warning that counts them.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from .._validation import check_choice, unknown_name_error
from .registry import available_datasets, dataset_modality, load_dataset, register_dataset

log = logging.getLogger(__name__)


class TextDataError(ValueError):
    """A text data file is unreadable or holds bad rows; the message names file and line."""


@dataclass
class TextDataset:
    """Texts and integer labels of a train and an evaluation split (SST-2: train and dev)."""

    name: str
    train_texts: list[str]
    train_labels: torch.Tensor
    test_texts: list[str]
    test_labels: torch.Tensor
    class_names: list[str]
    source: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def limited(self, limit: int, seed: int = 0) -> "TextDataset":
        """A seeded random ``limit`` training texts (SST files are sorted by class, so not the first N)
        and the first ``limit`` evaluation texts."""
        if limit < len(self.train_texts):
            g = torch.Generator().manual_seed(seed)
            idx = torch.randperm(len(self.train_texts), generator=g)[:limit].sort().values
            self.train_texts = [self.train_texts[i] for i in idx.tolist()]
            self.train_labels = self.train_labels[idx]
        self.test_texts, self.test_labels = self.test_texts[:limit], self.test_labels[:limit]
        return self

    def spec(self) -> dict:
        return {"name": self.name, "modality": "text", "kind": "text", "num_classes": self.num_classes, "class_names": self.class_names,
                "train_size": len(self.train_texts), "test_size": len(self.test_texts), **self.source}


def register_text_dataset(name: str, description: str = ""):
    """``register_dataset(name, description, modality="text")``."""
    return register_dataset(name, description, modality="text")


def available_text_datasets() -> dict[str, str]:
    return available_datasets("text")


def is_text_dataset(name: str) -> bool:
    """True for registered text datasets (``sst2``, ``csv``, ``tsv``, ...)."""
    try:
        return dataset_modality(name) == "text"
    except ValueError:
        return False


def load_text_dataset(name: str, *, data_dir: str | os.PathLike | None = None, limit: int | None = None,
                      seed: int = 0, **options) -> TextDataset:
    """:func:`robustkit.data.load_dataset` for a text dataset (an image dataset's name is an error)."""
    if not is_text_dataset(name):
        raise ValueError(unknown_name_error("text dataset", name, available_text_datasets()).args[0])
    return load_dataset(name, data_dir=data_dir, limit=limit, seed=seed, **options)


# -- reading files ------------------------------------------------------------------------------------
def read_utf8(path: Path) -> str:
    """Strict UTF-8 decode; an error names the line and byte offset of the first bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise TextDataError(f"{str(path)!r} is not valid UTF-8: byte {data[err.start]:#04x} at offset {err.start} "
                            f"(line {line}). Re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).") from None


def _check_text(text: str, where: str, on_empty: str) -> str | None:
    text = text.strip()
    if not text:
        if on_empty == "skip":
            return None
        raise TextDataError(f"Empty text at {where}. Remove the row or pass on_empty='skip'.")
    return text


def _labels_to_ids(raw: list[str], where: list[str], label_set: list[str], path: Path) -> torch.Tensor:
    index = {v: i for i, v in enumerate(label_set)}
    out = []
    for value, w in zip(raw, where):
        if value not in index:
            raise TextDataError(f"Label {value!r} at {w} is not in the label set {label_set} of {str(path)!r}'s "
                                "dataset. Fix the row or pass labels=[...] listing every label.")
        out.append(index[value])
    return torch.tensor(out, dtype=torch.long)


def _sort_labels(values: Sequence[str]) -> list[str]:
    vals = sorted(set(values))
    try:  # numeric labels in numeric order ("0", "1", "10"), else lexical
        return sorted(vals, key=float)
    except ValueError:
        return vals


def read_stsa(path: Path, on_empty: str = "error") -> tuple[list[str], list[str], list[str]]:
    """Classic SST split: one ``<label> <sentence>`` per line."""
    texts, labels, where = [], [], []
    for n, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        label, _, text = line.partition(" ")
        t = _check_text(text, f"{path}:{n}", on_empty)
        if t is None:
            continue
        texts.append(t)
        labels.append(label.strip())
        where.append(f"{path}:{n}")
    return texts, labels, where


def read_table(path: Path, *, text_column: str | int, label_column: str | int, delimiter: str,
               on_empty: str = "error") -> tuple[list[str], list[str], list[str]]:
    """CSV/TSV with a header row; columns by name (or index when the file has no header)."""
    rows = list(csv.reader(io.StringIO(read_utf8(path)), delimiter=delimiter,
                           quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL))
    if not rows:
        raise TextDataError(f"{str(path)!r} is empty.")
    if isinstance(text_column, int) and isinstance(label_column, int):
        header, body, first = None, rows, 1
        ti, li = text_column, label_column
    else:
        header, body, first = rows[0], rows[1:], 2
        cols = {c.strip(): i for i, c in enumerate(header)}
        for col in (text_column, label_column):
            if not isinstance(col, int) and col not in cols:
                raise TextDataError(f"{str(path)!r} has no column {col!r}; its header is {header}. "
                                    "Pass text_column=/label_column= naming existing columns.")
        ti = text_column if isinstance(text_column, int) else cols[text_column]
        li = label_column if isinstance(label_column, int) else cols[label_column]
    texts, labels, where = [], [], []
    for n, row in enumerate(body, first):
        if not row:
            continue
        if max(ti, li) >= len(row):
            raise TextDataError(f"Row {path}:{n} has {len(row)} field(s); expected at least {max(ti, li) + 1}.")
        t = _check_text(row[ti], f"{path}:{n}", on_empty)
        if t is None:
            continue
        texts.append(t)
        labels.append(row[li].strip())
        where.append(f"{path}:{n}")
    return texts, labels, where


def _data_root(data_dir, sub: str) -> Path:
    """``data_dir``'s ``sub`` folder, or ``data_dir`` itself; else ``$ROBUSTKIT_DATA/sub``."""
    candidates = []
    if data_dir is not None:
        candidates += [Path(data_dir) / sub, Path(data_dir)]
    env = os.environ.get("ROBUSTKIT_DATA")
    if env:
        candidates.append(Path(env) / sub)
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(f"No data for {sub!r}: pass --data-dir (a folder holding the files) or set "
                            f"$ROBUSTKIT_DATA to a folder with a {sub}/ subfolder. Tried: "
                            f"{[str(c) for c in candidates] or 'nothing (neither is set)'}.")


@register_text_dataset("sst2", "SST-2 sentiment (classic stsa.binary.train/dev, or GLUE glue/train.tsv/dev.tsv)")
def load_sst2(*, data_dir=None, variant: str = "auto", on_empty: str = "error", **_ignored) -> TextDataset:
    """SST-2 (Socher et al. 2013): train on the train split, evaluate on dev. ``variant``: classic | glue | auto
    (classic when its files are present: 6,920 full sentences; GLUE's train holds 67k phrases)."""
    check_choice(variant, "variant", ("auto", "classic", "glue"), owner="sst2")
    check_choice(on_empty, "on_empty", ("error", "skip"), owner="sst2")
    root = _data_root(data_dir, "sst2")
    classic = (root / "stsa.binary.train").is_file() and (root / "stsa.binary.dev").is_file()
    if variant == "classic" or (variant == "auto" and classic):
        tr, dv = root / "stsa.binary.train", root / "stsa.binary.dev"
        train = read_stsa(tr, on_empty)
        dev = read_stsa(dv, on_empty)
        used = "classic"
    else:
        tr, dv = root / "glue" / "train.tsv", root / "glue" / "dev.tsv"
        if not tr.is_file():
            raise FileNotFoundError(f"{str(root)!r} holds neither stsa.binary.train/dev nor glue/train.tsv/dev.tsv.")
        train = read_table(tr, text_column="sentence", label_column="label", delimiter="\t", on_empty=on_empty)
        dev = read_table(dv, text_column="sentence", label_column="label", delimiter="\t", on_empty=on_empty)
        used = "glue"
    labels = ["0", "1"]
    return TextDataset("sst2", train[0], _labels_to_ids(train[1], train[2], labels, tr), dev[0],
                       _labels_to_ids(dev[1], dev[2], labels, dv), ["negative", "positive"],
                       source={"variant": used, "files": [str(tr), str(dv)]})


def _table_loader(delimiter: str, name: str, reader=None):
    """A loader for ``train.<name>`` + ``dev.<name>`` files (or one file for both); ``reader(path, text_column=,
    label_column=, delimiter=, on_empty=)`` reads one file (default: :func:`read_table`)."""
    read = reader or read_table

    def load(*, data_dir=None, text_column: str | int = "text", label_column: str | int = "label",
             labels: list | None = None, on_empty: str = "error", train_file: str | None = None,
             test_file: str | None = None, **_ignored) -> TextDataset:
        check_choice(on_empty, "on_empty", ("error", "skip"), owner=name)
        if data_dir is None:
            raise ValueError(f"The {name} dataset needs --data-dir: a folder with train.{name} and dev.{name} "
                             f"(or test.{name}), or one file used for both.")
        root = Path(data_dir)
        if root.is_file():
            tr = dv = root
        else:
            tr = root / (train_file or f"train.{name}")
            dv = root / test_file if test_file else next(
                (root / f"{s}.{name}" for s in ("dev", "validation", "test") if (root / f"{s}.{name}").is_file()),
                root / f"dev.{name}")
        for p in (tr, dv):
            if not p.is_file():
                raise FileNotFoundError(f"Text data file {str(p)!r} does not exist.")
        kw = {"text_column": text_column, "label_column": label_column, "delimiter": delimiter, "on_empty": on_empty}
        train, dev = read(tr, **kw), read(dv, **kw)
        label_set = [str(v) for v in labels] if labels else _sort_labels(train[1])
        if len(label_set) < 2:
            raise TextDataError(f"{str(tr)!r} holds a single label {label_set}; a classifier needs at least two.")
        return TextDataset(name, train[0], _labels_to_ids(train[1], train[2], label_set, tr), dev[0],
                           _labels_to_ids(dev[1], dev[2], label_set, dv), label_set,
                           source={"files": [str(tr), str(dv)], "text_column": text_column,
                                   "label_column": label_column})
    load.__doc__ = f"Generic {name.upper()} text dataset: a header row, a text column and a label column."
    return load


register_text_dataset("csv", "generic CSV text classification (text_column, label_column)")(_table_loader(",", "csv"))
register_text_dataset("tsv", "generic TSV text classification (text_column, label_column)")(_table_loader("\t", "tsv"))


def read_jsonl(path: Path, *, text_column: str | int = "text", label_column: str | int = "label", delimiter=None,
               on_empty: str = "error") -> tuple[list[str], list[str], list[str]]:
    """JSON Lines: one object per line with a text field and a label field (named by the column options)."""
    import json
    texts, labels, where = [], [], []
    for n, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        w = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise TextDataError(f"Line {w} is not valid JSON ({err.msg} at column {err.colno}).") from None
        if not isinstance(row, dict):
            raise TextDataError(f"Line {w} holds a JSON {type(row).__name__}; expected an object with fields "
                                f"{text_column!r} and {label_column!r}.")
        for col in (text_column, label_column):
            if col not in row:
                raise TextDataError(f"Line {w} has no field {col!r}; its fields are {sorted(row)}. Pass "
                                    "text_column=/label_column= naming existing fields.")
        if not isinstance(row[text_column], str):
            raise TextDataError(f"Line {w}: field {text_column!r} must be a string. Got "
                                f"{type(row[text_column]).__name__}.")
        label = row[label_column]
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise TextDataError(f"Line {w}: field {label_column!r} must be a string or an integer label. Got "
                                f"{label!r}.")
        t = _check_text(row[text_column], w, on_empty)
        if t is None:
            continue
        texts.append(t)
        labels.append(str(label).strip())
        where.append(w)
    if not texts:
        raise TextDataError(f"{str(path)!r} holds no rows.")
    return texts, labels, where


register_text_dataset("jsonl", "generic JSON Lines text classification (text_column, label_column fields)")(
    _table_loader("", "jsonl", reader=read_jsonl))


@register_text_dataset("hf-disk", "a Hugging Face datasets folder written by save_to_disk (pip install datasets); "
                                  "text_column, label_column, train_split, test_split")
def load_hf_disk(*, data_dir=None, text_column: str = "text", label_column: str = "label", train_split: str = "train",
                 test_split: str | None = None, on_empty: str = "error", labels: list | None = None,
                 **_ignored) -> TextDataset:
    """``datasets.load_from_disk(data_dir)`` (a DatasetDict with a training and an evaluation split). Class
    names come from a ClassLabel feature when the label column has one, else from the sorted labels."""
    check_choice(on_empty, "on_empty", ("error", "skip"), owner="hf-disk")
    if data_dir is None or not Path(data_dir).is_dir():
        raise FileNotFoundError(f"The hf-disk dataset needs --data-dir: the folder written by "
                                f"DatasetDict.save_to_disk. Got {data_dir!r}.")
    try:
        import datasets as hf_datasets
    except ModuleNotFoundError as err:
        if err.name != "datasets":
            raise
        raise ModuleNotFoundError("The hf-disk dataset needs the optional package 'datasets': pip install "
                                  "'robustkit[hf-datasets]' (or pip install datasets).") from None
    try:
        dd = hf_datasets.load_from_disk(str(data_dir))
    except (OSError, ValueError) as err:
        raise TextDataError(f"{str(data_dir)!r} is not a dataset folder written by save_to_disk ({err}).") from None
    if not hasattr(dd, "keys"):
        raise TextDataError(f"{str(data_dir)!r} holds a single split; save a DatasetDict with a {train_split!r} and an "
                            "evaluation split (validation or test), e.g. ds.train_test_split(0.2).save_to_disk(...).")
    splits = list(dd.keys())
    test_split = test_split or next((s for s in ("validation", "test", "dev") if s in splits), None)
    for split in (train_split, test_split):
        if split is None or split not in splits:
            raise TextDataError(f"{str(data_dir)!r} has splits {splits}; pass train_split=/test_split= naming a "
                                "training and an evaluation split.")
    parts = []
    for split in (train_split, test_split):
        ds = dd[split]
        for col in (text_column, label_column):
            if col not in ds.column_names:
                raise TextDataError(f"Split {split!r} of {str(data_dir)!r} has no column {col!r}; its columns are "
                                    f"{list(ds.column_names)}. Pass text_column=/label_column=.")
        texts, raw, where = [], [], []
        for i, (t, y) in enumerate(zip(list(ds[text_column]), list(ds[label_column]))):
            w = f"{data_dir}[{split}][{i}]"
            if not isinstance(t, str):
                raise TextDataError(f"Row {w}: column {text_column!r} must hold strings. Got {type(t).__name__}.")
            t = _check_text(t, w, on_empty)
            if t is not None:
                texts.append(t)
                raw.append(str(y))
                where.append(w)
        parts.append((texts, raw, where))
    feature = getattr(dd[train_split], "features", {}).get(label_column) if hasattr(dd[train_split], "features") \
        else None
    names = list(getattr(feature, "names", None) or [])
    label_set = [str(v) for v in labels] if labels else ([str(i) for i in range(len(names))] if names
                                                        else _sort_labels(parts[0][1]))
    if len(label_set) < 2:
        raise TextDataError(f"{str(data_dir)!r} holds a single label {label_set}; a classifier needs at least two.")
    src = Path(data_dir)
    return TextDataset("hf-disk", parts[0][0], _labels_to_ids(parts[0][1], parts[0][2], label_set, src), parts[1][0],
                       _labels_to_ids(parts[1][1], parts[1][2], label_set, src), names or label_set,
                       source={"files": [str(data_dir)], "splits": [train_split, test_split],
                               "text_column": text_column, "label_column": label_column})


# -- tokenization ---------------------------------------------------------------------------------------
def encode_texts(tokenizer, texts: Sequence[str], max_length: int, *, warn: bool = True
                 ) -> tuple[list[list[int]], int]:
    """Token ids per text with special tokens, cut to ``max_length`` (the final [SEP] kept).

    Returns (ids, number truncated); logs one warning with the count when any text was cut.
    """
    if isinstance(texts, str):
        raise TypeError("The 'texts' parameter of encode_texts must be a list of strings, not one string.")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"The 'texts' parameter of encode_texts must hold strings. Got {type(t).__name__} "
                            f"at index {i} instead.")
    enc = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    out, cut = [], 0
    for ids in enc:
        if len(ids) > max_length:
            cut += 1
            ids = ids[: max_length - 1] + ids[-1:]  # keep the closing special token ([SEP])
        out.append(ids)
    if cut and warn:
        log.warning("%d of %d texts are longer than max_length=%d tokens and were truncated", cut, len(enc),
                    max_length)
    return out, cut


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Dynamic padding: to the longest sequence of this batch only."""
    width = max(len(s) for s in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, s in enumerate(ids):
        input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def text_batches(texts: Sequence[str], labels: torch.Tensor, tokenizer, *, batch_size: int, max_length: int,
                 seed: int, shuffle: bool = True, with_texts: bool = False, bucket: int = 50, rank: int = 0,
                 world: int = 1):
    """Seeded batches of (inputs dict, labels) for the Trainer; epoch e's order depends only on (seed, e).

    Texts are tokenized once. Batches are drawn from a shuffled order sorted by length inside windows
    of ``bucket`` batches, so padding (and CPU time) stays small while batches stay random.
    ``with_texts`` adds the raw strings under ``"texts"`` (the ``augment`` objective attacks words).
    ``batch_size`` is the global batch: under DDP each rank takes a stride of every global batch (as
    :func:`robustkit.data.batches.tensor_batches` does), so all ranks take the same number of steps.
    """
    from .batches import check_divisible, shard_of
    check_divisible(batch_size, world)
    ids, _ = encode_texts(tokenizer, texts, max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    lengths = torch.tensor([len(s) for s in ids])

    def epoch_batches(epoch: int) -> Iterator[tuple[dict, torch.Tensor]]:
        if shuffle:
            g = torch.Generator().manual_seed(seed * 100_003 + epoch)
            order = torch.randperm(len(ids), generator=g)
            chunks = []
            for i in range(0, len(order), batch_size * bucket):
                window = order[i:i + batch_size * bucket]
                window = window[torch.argsort(lengths[window], stable=True)]
                chunks += [window[j:j + batch_size] for j in range(0, len(window), batch_size)]
            # shuffle the batches themselves so lengths do not rise steadily through the epoch
            chunks = [chunks[k] for k in torch.randperm(len(chunks), generator=g).tolist()]
        else:
            order = torch.arange(len(ids))
            chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for idx in chunks:
            if len(idx) < world:  # smaller than the number of ranks: every rank skips it (same step count)
                continue
            idx = shard_of(idx, rank, world)
            sel = idx.tolist()
            batch = pad_batch([ids[i] for i in sel], pad)
            if with_texts:
                batch["texts"] = [texts[i] for i in sel]
            yield batch, labels[idx]

    epoch_batches.num_batches = math.ceil(len(ids) / batch_size)  # type: ignore[attr-defined]  (an upper bound under DDP)
    return epoch_batches
