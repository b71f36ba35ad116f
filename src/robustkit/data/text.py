"""Text datasets (SST-2 and generic CSV/TSV/JSONL) and tokenized batches with dynamic padding.

Bad input is rejected at load time with the file and line: non-UTF-8 bytes, empty texts (or
skipped with ``on_empty="skip"``), labels outside the label set. Texts longer than ``max_length``
tokens are truncated with one logged warning that counts them.

Two-sentence tasks (NLI: premise/hypothesis, paraphrase) travel through the whole text path as ONE
string, ``text + PAIR_SEPARATOR + text_pair``: loaders build it from ``text_pair_column``, attacks
and reports see an ordinary string (word attacks split on whitespace and never change the
non-alphabetic ``|||`` word, so they substitute real words of either sentence), and tokenization
(:func:`tokenize_texts`, :func:`encode_words`) splits it again and calls the tokenizer with
``(text, text_pair)``, so the model gets its [SEP] between them and segment (token type) ids.
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


#: Joins the two sentences of a pair into the one string the text path carries (see the module docstring).
PAIR_SEPARATOR = " ||| "
#: The separator as a word of a whitespace-split text.
PAIR_MARK = PAIR_SEPARATOR.strip()


def join_pair(text: str, text_pair: str) -> str:
    """``text`` and ``text_pair`` as the one string robustkit carries (``text ||| text_pair``)."""
    return f"{text}{PAIR_SEPARATOR}{text_pair}"


def split_pair(text: str, *, where: str = "the text") -> tuple[str, str | None]:
    """``"a ||| b"`` -> ``("a", "b")``; a text without the separator -> ``(text, None)``.

    The separator more than once, or an empty side, is an error naming ``where``.
    """
    n = text.count(PAIR_MARK)
    if n == 0:
        return text, None
    if n > 1:
        raise ValueError(f"{where} holds the pair separator {PAIR_MARK!r} {n} times; a two-sentence input holds it "
                         f"exactly once (text{PAIR_SEPARATOR}text_pair), a single sentence not at all. Got "
                         f"{_short(text)!r} instead.")
    first, second = (part.strip() for part in text.split(PAIR_MARK))
    if not first or not second:
        side = "first" if not first else "second"
        raise ValueError(f"{where} is a sentence pair (it holds {PAIR_MARK!r}) whose {side} sentence is empty. "
                         f"Expected text{PAIR_SEPARATOR}text_pair with two non-empty sentences. Got {_short(text)!r}.")
    return first, second


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


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

    def reorder_labels(self, order: list[int], class_names: list[str]) -> "TextDataset":
        """Re-map label ids in place: old id ``d`` becomes ``order[d]``; ``class_names`` are the names in the new
        order (a model's labels, when the data lists the same labels in another order)."""
        if sorted(order) != list(range(self.num_classes)) or len(class_names) != self.num_classes:
            raise ValueError(f"The 'order' parameter of reorder_labels must be a permutation of "
                             f"range({self.num_classes}) with as many class names. Got {order!r}, {class_names!r}.")
        perm = torch.tensor(order, dtype=torch.long)
        self.train_labels, self.test_labels = perm[self.train_labels], perm[self.test_labels]
        self.class_names = [str(n) for n in class_names]
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


def _check_text(text: str, where: str, on_empty: str, column: str | int | None = None) -> str | None:
    """A stripped text, or None (``on_empty="skip"``) for an empty one; bad text is an error naming ``where``."""
    text = text.strip()
    what = f"column {column!r}" if column is not None else "the text"
    if not text:
        if on_empty == "skip":
            return None
        col = f" (column {column!r})" if column is not None else ""
        raise TextDataError(f"Empty text at {where}{col}: expected a non-empty sentence. Remove the row or pass "
                            "on_empty='skip' (--data-option on_empty=skip).")
    try:  # JSON escapes can smuggle in lone surrogates, which no tokenizer (nor a UTF-8 report) can take
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise TextDataError(f"The text in {what} at {where} is not valid Unicode: it holds the unpaired surrogate "
                            f"{text[err.start]!r} at character {err.start}. Expected UTF-8 text.") from None
    if PAIR_MARK in text:
        # The separator is how pairs travel; inside one sentence it would be misread as a pair boundary.
        raise TextDataError(f"The text in {what} at {where} contains {PAIR_MARK!r}, which robustkit reserves to join "
                            "the two sentences of a pair (text_pair_column). Expected text without it. Got "
                            f"{_short(text)!r}.")
    return text


def _row_text(get, where: str, on_empty: str, text_column, text_pair_column) -> str | None:
    """The row's text (``get(column)`` reads a field), joined with its pair when ``text_pair_column`` is set."""
    first = _check_text(get(text_column), where, on_empty, text_column if text_pair_column is not None else None)
    if text_pair_column is None:
        return first
    second = _check_text(get(text_pair_column), where, on_empty, text_pair_column)
    if first is None or second is None:
        return None
    return join_pair(first, second)


def _labels_to_ids(raw: list[str], where: list[str], label_set: list[str], path: Path) -> torch.Tensor:
    index = {v: i for i, v in enumerate(label_set)}
    out = []
    for value, w in zip(raw, where):
        if value not in index:
            raise TextDataError(f"Label {value!r} at {w} is not in the label set {label_set} of {str(path)!r}'s "
                                "dataset. Fix the row or pass labels=[...] listing every label.")
        out.append(index[value])
    return torch.tensor(out, dtype=torch.long)


def _label_set(labels, seen: Sequence[str]) -> list[str]:
    """The class names in id order: ``labels`` as given (a list, or "a,b,c" from --data-option), else sorted."""
    if labels is None or labels == "" or labels == []:
        return _sort_labels(seen)
    if isinstance(labels, str):
        labels = [v.strip() for v in labels.split(",") if v.strip()]
    out = [str(v).strip() for v in labels]
    if len(set(out)) != len(out):
        raise TextDataError(f"The 'labels' option must list each label once. Got {out}.")
    return out


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
               on_empty: str = "error", text_pair_column: str | int | None = None
               ) -> tuple[list[str], list[str], list[str]]:
    """CSV/TSV with a header row; columns by name (or index when the file has no header).

    With ``text_pair_column`` each text is the row's pair joined by :data:`PAIR_SEPARATOR`.
    """
    rows = list(csv.reader(io.StringIO(read_utf8(path)), delimiter=delimiter,
                           quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL))
    if not rows:
        raise TextDataError(f"{str(path)!r} is empty.")
    columns = [c for c in (text_column, text_pair_column, label_column) if c is not None]
    if all(isinstance(c, int) for c in columns):
        header, body, first = None, rows, 1
        index = {c: c for c in columns}
    else:
        header, body, first = rows[0], rows[1:], 2
        cols = {c.strip(): i for i, c in enumerate(header)}
        for option, col in (("text_column", text_column), ("text_pair_column", text_pair_column),
                            ("label_column", label_column)):
            if col is not None and not isinstance(col, int) and col not in cols:
                raise TextDataError(f"{str(path)!r} has no column {col!r} (the {option!r} option); its header is "
                                    f"{header}. Pass {option}= naming an existing column.")
        index = {c: c if isinstance(c, int) else cols[c] for c in columns}
    need = max(index.values()) + 1
    texts, labels, where = [], [], []
    for n, row in enumerate(body, first):
        if not row:
            continue
        w = f"{path}:{n}"
        if need > len(row):
            raise TextDataError(f"Row {w} has {len(row)} field(s); expected at least {need} (columns "
                                f"{', '.join(repr(c) for c in columns)}).")
        t = _row_text(lambda c: row[index[c]], w, on_empty, text_column, text_pair_column)
        if t is None:
            continue
        texts.append(t)
        labels.append(row[index[label_column]].strip())
        where.append(w)
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
             text_pair_column: str | int | None = None, labels: list | None = None, on_empty: str = "error",
             train_file: str | None = None, test_file: str | None = None, **_ignored) -> TextDataset:
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
        kw = {"text_column": text_column, "label_column": label_column, "delimiter": delimiter, "on_empty": on_empty,
              "text_pair_column": text_pair_column}
        train, dev = read(tr, **kw), read(dv, **kw)
        for p, part in ((tr, train), (dv, dev)):
            if not part[0]:
                raise TextDataError(f"{str(p)!r} holds no rows with text (expected at least one row of column "
                                    f"{text_column!r}{'' if on_empty == 'error' else ' after skipping empty texts'}).")
        label_set = _label_set(labels, train[1])
        if len(label_set) < 2:
            raise TextDataError(f"{str(tr)!r} holds a single label {label_set}; a classifier needs at least two.")
        source = {"files": [str(tr), str(dv)], "text_column": text_column, "label_column": label_column}
        if text_pair_column is not None:
            source["text_pair_column"] = text_pair_column
        return TextDataset(name, train[0], _labels_to_ids(train[1], train[2], label_set, tr), dev[0],
                           _labels_to_ids(dev[1], dev[2], label_set, dv), label_set, source=source)
    load.__doc__ = (f"Generic {name.upper()} text dataset: a text column (and for two-sentence tasks a "
                    "text_pair_column) and a label column.")
    return load


register_text_dataset("csv", "generic CSV text classification (text_column, label_column; text_pair_column "
                             "for two-sentence tasks)")(_table_loader(",", "csv"))
register_text_dataset("tsv", "generic TSV text classification (text_column, label_column; text_pair_column "
                             "for two-sentence tasks)")(_table_loader("\t", "tsv"))


def read_jsonl(path: Path, *, text_column: str | int = "text", label_column: str | int = "label", delimiter=None,
               on_empty: str = "error", text_pair_column: str | int | None = None
               ) -> tuple[list[str], list[str], list[str]]:
    """JSON Lines: one object per line with a text field and a label field (named by the column options);
    with ``text_pair_column`` a second text field, joined to the first by :data:`PAIR_SEPARATOR`."""
    import json
    fields = [c for c in (text_column, text_pair_column, label_column) if c is not None]
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
                                f"{', '.join(repr(f) for f in fields)}.")
        for option, col in (("text_column", text_column), ("text_pair_column", text_pair_column),
                            ("label_column", label_column)):
            if col is not None and col not in row:
                raise TextDataError(f"Line {w} has no field {col!r} (the {option!r} option); its fields are "
                                    f"{sorted(row)}. Pass {option}= naming an existing field.")
        for col in (text_column, text_pair_column):
            if col is not None and not isinstance(row[col], str):
                raise TextDataError(f"Line {w}: field {col!r} must be a string. Got {type(row[col]).__name__} "
                                    f"({row[col]!r}).")
        label = row[label_column]
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise TextDataError(f"Line {w}: field {label_column!r} must be a string or an integer label. Got "
                                f"{label!r}.")
        t = _row_text(lambda c: row[c], w, on_empty, text_column, text_pair_column)
        if t is None:
            continue
        texts.append(t)
        labels.append(str(label).strip())
        where.append(w)
    if not texts:
        raise TextDataError(f"{str(path)!r} holds no rows.")
    return texts, labels, where


register_text_dataset("jsonl", "generic JSON Lines text classification (text_column, label_column fields; "
                               "text_pair_column for two-sentence tasks)")(
    _table_loader("", "jsonl", reader=read_jsonl))


@register_text_dataset("hf-disk", "a Hugging Face datasets folder written by save_to_disk (pip install datasets); "
                                  "text_column, label_column, train_split, test_split")
def load_hf_disk(*, data_dir=None, text_column: str = "text", label_column: str = "label", train_split: str = "train",
                 test_split: str | None = None, on_empty: str = "error", labels: list | None = None,
                 text_pair_column: str | None = None, **_ignored) -> TextDataset:
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
        for option, col in (("text_column", text_column), ("text_pair_column", text_pair_column),
                            ("label_column", label_column)):
            if col is not None and col not in ds.column_names:
                raise TextDataError(f"Split {split!r} of {str(data_dir)!r} has no column {col!r} (the {option!r} "
                                    f"option); its columns are {list(ds.column_names)}. Pass {option}= naming one.")
        texts, raw, where = [], [], []
        firsts, ys = list(ds[text_column]), list(ds[label_column])
        seconds = list(ds[text_pair_column]) if text_pair_column is not None else [None] * len(firsts)
        for i, (t, t2, y) in enumerate(zip(firsts, seconds, ys)):
            w = f"{data_dir}[{split}][{i}]"
            row = {text_column: t, text_pair_column: t2}
            for col in (text_column, text_pair_column):
                if col is not None and not isinstance(row[col], str):
                    raise TextDataError(f"Row {w}: column {col!r} must hold strings. Got {type(row[col]).__name__}.")
            t = _row_text(row.__getitem__, w, on_empty, text_column, text_pair_column)
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
                               "text_column": text_column, "label_column": label_column,
                               **({"text_pair_column": text_pair_column} if text_pair_column is not None else {})})


# -- tokenization ---------------------------------------------------------------------------------------
@dataclass
class Encoded:
    """Tokenized texts (lists per text, unpadded): what :func:`pad_batch` turns into a model's inputs.

    ``token_type_ids`` (segment ids: 0 for the first sentence, 1 for a pair's second) is None when the
    tokenizer makes none (RoBERTa-style); ``offsets``/``sequence_ids`` (per token: character span in its
    sentence, and which sentence, None for special tokens) only when asked for (word alignment).
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    truncated: int
    offsets: list[list[tuple[int, int]]] | None = None
    sequence_ids: list[list[int | None]] | None = None


def _check_texts(texts, owner: str) -> None:
    if isinstance(texts, str):
        raise TypeError(f"The 'texts' parameter of {owner} must be a list of strings, not one string.")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"The 'texts' parameter of {owner} must hold strings. Got {type(t).__name__} "
                            f"at index {i} instead.")


def tokenize_texts(tokenizer, texts: Sequence[str], max_length: int, *, warn: bool = True,
                   alignment: bool = False) -> Encoded:
    """Token ids (with special tokens) and segment ids per text, cut to ``max_length`` tokens.

    A text holding :data:`PAIR_SEPARATOR` is a pair: its two sentences go to the tokenizer as
    ``(text, text_pair)`` ([CLS] a [SEP] b [SEP], segment ids 0 then 1) and a too-long pair loses tokens
    from its longer sentence first (``longest_first``). A single text keeps its first ``max_length - 1``
    tokens and its closing special token. Logs one warning counting the truncated texts (``warn``).
    ``alignment`` also returns each token's character offsets and sentence index (fast tokenizers).
    """
    _check_texts(texts, "tokenize_texts")
    n = len(texts)
    parts = [split_pair(t, where=f"Text {i} of the batch") for i, t in enumerate(texts)]
    ids: list = [None] * n
    types: list = [None] * n
    offs: list = [None] * n
    seqs: list = [None] * n
    has_types = True
    cut = 0
    extra = {"return_offsets_mapping": True} if alignment else {}

    def take(enc, k: int, i: int, truncate: bool = False) -> None:
        """Row ``k`` of ``enc`` as text ``i``; ``truncate`` keeps the first max_length - 1 tokens and the last."""
        nonlocal has_types
        sl = (lambda v: v[: max_length - 1] + v[-1:]) if truncate else (lambda v: v)
        ids[i] = sl(list(enc["input_ids"][k]))
        if "token_type_ids" in enc:
            types[i] = sl(list(enc["token_type_ids"][k]))
        else:
            has_types = False
        if alignment:
            offs[i] = sl([tuple(o) for o in enc["offset_mapping"][k]])
            seqs[i] = sl(list(enc.sequence_ids(k)))

    singles = [i for i, (_, b) in enumerate(parts) if b is None]
    if singles:
        enc = tokenizer([parts[i][0] for i in singles], add_special_tokens=True, truncation=False, verbose=False,
                        **extra)
        for k, i in enumerate(singles):
            long = len(enc["input_ids"][k]) > max_length
            cut += long
            take(enc, k, i, truncate=long)  # keeps the closing special token ([SEP])
    pairs = [i for i, (_, b) in enumerate(parts) if b is not None]
    if pairs:
        firsts, seconds = [parts[i][0] for i in pairs], [parts[i][1] for i in pairs]
        enc = tokenizer(firsts, seconds, add_special_tokens=True, truncation=False, verbose=False, **extra)
        long = [k for k in range(len(pairs)) if len(enc["input_ids"][k]) > max_length]
        for k, i in enumerate(pairs):
            take(enc, k, i)
        if long:  # only the too-long pairs again, truncated by the tokenizer itself (longest sentence first)
            cut += len(long)
            enc = tokenizer([firsts[k] for k in long], [seconds[k] for k in long], add_special_tokens=True,
                            truncation="longest_first", max_length=max_length, verbose=False, **extra)
            for j, k in enumerate(long):
                take(enc, j, pairs[k])
    if cut and warn:
        log.warning("%d of %d texts are longer than max_length=%d tokens and were truncated", cut, n, max_length)
    return Encoded(ids, types if has_types and n else None, cut, offs if alignment else None,
                   seqs if alignment else None)


def encode_texts(tokenizer, texts: Sequence[str], max_length: int, *, warn: bool = True
                 ) -> tuple[list[list[int]], int]:
    """Token ids per text with special tokens, cut to ``max_length`` (the final [SEP] kept).

    Returns (ids, number truncated); logs one warning with the count when any text was cut. Pairs
    (``a ||| b``) are tokenized as pairs; their segment ids come from :func:`tokenize_texts`.
    """
    _check_texts(texts, "encode_texts")
    enc = tokenize_texts(tokenizer, texts, max_length, warn=warn)
    return enc.input_ids, enc.truncated


def encode_words(tokenizer, words: Sequence[Sequence[str]], max_length: int
                 ) -> tuple[Encoded, list[list[int | None]]]:
    """Tokenize whitespace-split texts and say which word each token came from.

    ``words[i]`` is one text's words (``text.split()``); a pair holds the word ``|||`` once, between its
    two sentences. The words are joined with single spaces and tokenized exactly as
    :func:`tokenize_texts` tokenizes ``" ".join(words[i])`` (same ids, same truncation), and each token is
    mapped back through its character offsets: the index of its word in ``words[i]``, or None for
    special tokens (the separator word itself maps to no token: it becomes the pair's [SEP]).
    """
    if isinstance(words, str) or not isinstance(words, Sequence):
        raise TypeError("The 'words' parameter of encode_words must be a list of word lists (text.split() per "
                        f"text). Got {type(words).__name__} instead.")
    texts, spans = [], []
    for i, ws in enumerate(words):
        if isinstance(ws, str) or not isinstance(ws, Sequence) or not all(isinstance(w, str) for w in ws):
            raise TypeError(f"The 'words' parameter of encode_words must hold lists of strings. Got {ws!r} at index "
                            f"{i} instead.")
        if not ws:
            raise ValueError(f"The 'words' parameter of encode_words must hold non-empty word lists. Got [] at "
                             f"index {i} instead.")
        bad = [w for w in ws if PAIR_MARK in w and w != PAIR_MARK]
        if bad:
            raise ValueError(f"The 'words' parameter of encode_words holds {bad[0]!r} at index {i}: the pair "
                             f"separator {PAIR_MARK!r} must be a word of its own. Got {list(ws)!r}.")
        seps = [k for k, w in enumerate(ws) if w == PAIR_MARK]
        if len(seps) > 1:
            raise ValueError(f"The 'words' parameter of encode_words holds the pair separator {PAIR_MARK!r} "
                             f"{len(seps)} times at index {i}; a pair holds it once. Got {list(ws)!r}.")
        segments = [(0, list(ws[: seps[0]])), (seps[0] + 1, list(ws[seps[0] + 1:]))] if seps else [(0, list(ws))]
        # Per segment, the word index of each character of the joined sentence (None for the spaces).
        maps = []
        for start, seg in segments:
            char_word: list[int | None] = []
            for k, w in enumerate(seg):
                if k:
                    char_word.append(None)
                char_word += [start + k] * len(w)
            maps.append(char_word)
        texts.append(" ".join(ws))
        spans.append(maps)
    enc = tokenize_texts(tokenizer, texts, max_length, warn=False, alignment=True)
    word_ids: list[list[int | None]] = []
    for i in range(len(texts)):
        row: list[int | None] = []
        for (s, e), seq in zip(enc.offsets[i], enc.sequence_ids[i]):
            w = None
            if seq is not None and e > s:
                cmap = spans[i][seq]
                w = next((cmap[c] for c in range(s, min(e, len(cmap))) if cmap[c] is not None), None)
            row.append(w)
        word_ids.append(row)
    return enc, word_ids


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int, token_type_ids: Sequence[Sequence[int]] | None = None
              ) -> dict[str, torch.Tensor]:
    """Dynamic padding: to the longest sequence of this batch only (segment ids, when given, pad with 0)."""
    width = max(len(s) for s in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, s in enumerate(ids):
        input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    out = {"input_ids": input_ids, "attention_mask": mask}
    if token_type_ids is not None:
        types = torch.zeros((len(ids), width), dtype=torch.long)
        for i, s in enumerate(token_type_ids):
            types[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        out["token_type_ids"] = types
    return out


def text_batches(texts: Sequence[str], labels: torch.Tensor, tokenizer, *, batch_size: int, max_length: int,
                 seed: int, shuffle: bool = True, with_texts: bool = False, bucket: int = 50, rank: int = 0,
                 world: int = 1, token_types: bool = True):
    """Seeded batches of (inputs dict, labels) for the Trainer; epoch e's order depends only on (seed, e).

    Texts are tokenized once. Batches are drawn from a shuffled order sorted by length inside windows
    of ``bucket`` batches, so padding (and CPU time) stays small while batches stay random.
    ``with_texts`` adds the raw strings under ``"texts"`` (the ``augment`` objective attacks words).
    ``batch_size`` is the global batch: under DDP each rank takes a stride of every global batch (as
    :func:`robustkit.data.batches.tensor_batches` does), so all ranks take the same number of steps.
    Pairs (``a ||| b``) are tokenized as pairs; the batches carry ``token_type_ids`` when the tokenizer
    makes them and ``token_types`` is set (a model without segment embeddings passes False).
    """
    from .batches import check_divisible, shard_of
    check_divisible(batch_size, world)
    enc = tokenize_texts(tokenizer, texts, max_length)
    ids = enc.input_ids
    types = enc.token_type_ids if token_types else None
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
            batch = pad_batch([ids[i] for i in sel], pad, None if types is None else [types[i] for i in sel])
            if with_texts:
                batch["texts"] = [texts[i] for i in sel]
            yield batch, labels[idx]

    epoch_batches.num_batches = math.ceil(len(ids) / batch_size)  # type: ignore[attr-defined]  (an upper bound under DDP)
    return epoch_batches
