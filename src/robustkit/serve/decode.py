"""Request inputs -> model inputs, per modality, with every check at this boundary.

Each modality has a codec (registered by its adapter's name, like the adapters themselves): the
tensor datatype and shape of the Open Inference Protocol, how an OIP tensor and a ``/v1/predict``
item become a model batch, and how batches are joined and split by the micro-batcher. Bad input
raises :class:`InputError` naming the field; the app answers it with a 4xx JSON error.
"""
from __future__ import annotations

import base64
import binascii
import io
import math
import warnings
from typing import Any, Callable

import numpy as np
import torch

DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_MAX_IMAGE_BYTES = 4 * 1024 * 1024


class InputError(ValueError):
    """A request the service refuses: HTTP ``status`` with a message naming ``field``."""

    def __init__(self, field: str | None, message: str, status: int = 422, headers: dict | None = None):
        super().__init__(message)
        self.field, self.message, self.status, self.headers = field, message, status, headers or {}


class VisionCodec:
    """Images: FP32 tensors (N, C, H, W) in the model's input range; PNG/JPEG (base64) or nested arrays in /v1."""

    datatype = "FP32"

    def __init__(self, input_shape: list[int], bounds: tuple[float, float], *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES, **_):
        self.input_shape = [int(s) for s in input_shape]
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.max_pixels, self.max_image_bytes = max_pixels, max_image_bytes

    def oip_shape(self) -> list[int]:
        return [-1, *self.input_shape]

    # -- checks shared by both protocols -----------------------------------------------------------
    def _check_values(self, arr: np.ndarray, field: str) -> None:
        if not np.isfinite(arr).all():
            raise InputError(field, "must contain only finite numbers (no NaN or Infinity).")
        lo, hi = self.bounds
        if arr.size and (arr.min() < lo - 1e-6 or arr.max() > hi + 1e-6):
            raise InputError(field, f"values must lie in the model's input range [{lo:g}, {hi:g}]; got values in "
                                    f"[{float(arr.min()):.4g}, {float(arr.max()):.4g}].")

    @staticmethod
    def _to_array(data: Any, field: str) -> np.ndarray:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # ragged nesting must fail, not become an object array
                arr = np.asarray(data)
        except (ValueError, TypeError, OverflowError, RecursionError, Warning):
            arr = None
        if arr is None or arr.dtype.kind not in "fiu":  # strings, booleans, objects, ragged nesting
            raise InputError(field, "must be numbers (a flat or regularly nested array of numbers).")
        return arr.astype(np.float64, copy=False)

    # -- Open Inference Protocol -------------------------------------------------------------------
    def from_oip(self, shape: list[int], datatype: str, data: list | None, field: str, max_batch: int,
                 raw: bytes | None = None) -> torch.Tensor:
        if datatype != "FP32":
            raise InputError(f"{field}.datatype", f"must be 'FP32' for this image model; got {datatype!r}.")
        want = len(self.input_shape) + 1
        if len(shape) != want or list(shape[1:]) != self.input_shape:
            raise InputError(f"{field}.shape", f"must be [N, {', '.join(map(str, self.input_shape))}]; got {shape}.")
        n = shape[0]
        if not 1 <= n <= max_batch:
            raise InputError(f"{field}.shape", f"the batch size N must be between 1 and {max_batch}; got {n}.")
        if raw is not None:  # binary tensor extension: little-endian float32, row-major
            if len(raw) != 4 * math.prod(shape):
                raise InputError(f"{field}.parameters.binary_data_size", f"must be {4 * math.prod(shape)} bytes "
                                                                         f"(FP32 {shape}); got {len(raw)}.")
            arr = np.frombuffer(raw, dtype="<f4").astype(np.float64).reshape(shape)
            self._check_values(arr, f"{field}.data")
            return torch.from_numpy(arr.astype(np.float32))
        if data is None:
            raise InputError(f"{field}.data", "is required (or send the tensor in binary, with binary_data_size).")
        arr = self._to_array(data, f"{field}.data")
        if arr.size != math.prod(shape):
            raise InputError(f"{field}.data", f"must hold {math.prod(shape)} numbers for shape {shape}; got {arr.size}.")
        if arr.ndim not in (1, len(shape)) or (arr.ndim == len(shape) and list(arr.shape) != list(shape)):
            raise InputError(f"{field}.data", f"must be flat (row-major) or nested as {shape}; got nesting {list(arr.shape)}.")
        arr = arr.reshape(shape)
        self._check_values(arr, f"{field}.data")
        return torch.from_numpy(arr.astype(np.float32))

    # -- /v1/predict -------------------------------------------------------------------------------
    def from_items(self, items: list, field: str) -> torch.Tensor:
        rows = []
        for i, item in enumerate(items):
            where = f"{field}[{i}]"
            rows.append(self._decode_image(item, where) if isinstance(item, str) else self._nested(item, where))
        return torch.from_numpy(np.stack(rows).astype(np.float32))

    def _nested(self, item: Any, field: str) -> np.ndarray:
        arr = self._to_array(item, field)
        c, h, w = self.input_shape if len(self.input_shape) == 3 else (None, None, None)
        if list(arr.shape) == self.input_shape:
            pass
        elif c == 1 and list(arr.shape) == [h, w]:
            arr = arr[None]
        elif c is not None and list(arr.shape) == [h, w, c]:
            arr = arr.transpose(2, 0, 1)
        else:
            raise InputError(field, f"must be an array of shape {self.input_shape} (C, H, W)"
                                    f"{f' or [{h}, {w}]' if c == 1 else ''}; got shape {list(arr.shape)}.")
        self._check_values(arr, field)
        return arr

    def _decode_image(self, text: str, field: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError
        if text.startswith("data:"):  # data URL: data:image/png;base64,....
            text = text.partition(",")[2]
        if len(text) > self.max_image_bytes * 4 // 3 + 4:
            raise InputError(field, f"the encoded image is larger than {self.max_image_bytes} bytes.", status=413)
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(field, "is not valid base64 (expected a base64 PNG or JPEG image, or a nested array).") \
                from None
        if len(self.input_shape) != 3 or self.input_shape[0] not in (1, 3):
            raise InputError(field, f"images can be sent only to 1- or 3-channel models; this model takes "
                                    f"{self.input_shape}. Send a nested array instead.")
        c, h, w = self.input_shape
        try:
            with Image.open(io.BytesIO(raw), formats=["PNG", "JPEG"]) as im:
                # The header's size is checked before any pixel is decoded: a small file can claim a huge
                # image (decompression bomb); PIL's own guard (MAX_IMAGE_PIXELS) is a second line.
                if im.width * im.height > self.max_pixels:
                    raise InputError(field, f"the image is {im.width}x{im.height} pixels, more than the limit of "
                                            f"{self.max_pixels}.", status=413)
                if (im.height, im.width) != (h, w):
                    raise InputError(field, f"the image must be {w}x{h} pixels (width x height) for this model; "
                                            f"got {im.width}x{im.height}.")
                im = im.convert("L" if c == 1 else "RGB")
                arr = np.asarray(im, dtype=np.float64)
        except InputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(field, "the image claims more pixels than allowed (decompression bomb).", status=413) \
                from None
        except (UnidentifiedImageError, OSError,
                SyntaxError, ValueError, EOFError):
            raise InputError(field, "could not be decoded as a PNG or JPEG image.") from None
        arr = arr[None] if c == 1 else arr.transpose(2, 0, 1)
        lo, hi = self.bounds
        return lo + (hi - lo) * arr / 255.0

    # -- micro-batching ----------------------------------------------------------------------------
    @staticmethod
    def size(x) -> int:
        return int(x.shape[0])

    @staticmethod
    def concat(parts: list):
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class TextCodec:
    """Texts: BYTES tensors (N,) of UTF-8 strings; plain strings in /v1."""

    datatype = "BYTES"

    def __init__(self, *, max_text_chars: int = 2000, **_):
        self.max_text_chars = max_text_chars

    def oip_shape(self) -> list[int]:
        return [-1]

    def _check(self, t: Any, field: str) -> str:
        if not isinstance(t, str):
            raise InputError(field, f"must be a string; got {type(t).__name__}.")
        if not t.strip():
            raise InputError(field, "must be a non-empty text.")
        if len(t) > self.max_text_chars:
            raise InputError(field, f"the text has {len(t)} characters, more than the limit of {self.max_text_chars}.")
        return t

    def from_oip(self, shape: list[int], datatype: str, data: list | None, field: str, max_batch: int,
                 raw: bytes | None = None) -> list[str]:
        if datatype != "BYTES":
            raise InputError(f"{field}.datatype", f"must be 'BYTES' for this text model; got {datatype!r}.")
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise InputError(f"{field}.shape", f"must be [N] (or [N, 1]); got {shape}.")
        n = shape[0]
        if not 1 <= n <= max_batch:
            raise InputError(f"{field}.shape", f"the batch size N must be between 1 and {max_batch}; got {n}.")
        if raw is not None:
            data = self._split_bytes(raw, n, f"{field}.parameters.binary_data_size")
        if data is None:
            raise InputError(f"{field}.data", "is required (or send the tensor in binary, with binary_data_size).")
        flat = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in data]
        if len(flat) != n:
            raise InputError(f"{field}.data", f"must hold {n} strings for shape {shape}; got {len(flat)}.")
        return [self._check(t, f"{field}.data[{i}]") for i, t in enumerate(flat)]

    def from_items(self, items: list, field: str) -> list[str]:
        return [self._check(t, f"{field}[{i}]") for i, t in enumerate(items)]

    @staticmethod
    def _split_bytes(raw: bytes, n: int, field: str) -> list[str]:
        """The binary BYTES layout: each element is a 4-byte little-endian length, then that many UTF-8 bytes."""
        out, pos = [], 0
        while pos < len(raw) and len(out) < n:
            if pos + 4 > len(raw):
                break
            size = int.from_bytes(raw[pos:pos + 4], "little")
            chunk = raw[pos + 4:pos + 4 + size]
            if len(chunk) != size:
                break
            try:
                out.append(chunk.decode("utf-8"))
            except UnicodeDecodeError:
                raise InputError(field, f"element {len(out)} is not valid UTF-8.") from None
            pos += 4 + size
        if len(out) != n or pos != len(raw):
            raise InputError(field, f"must hold exactly {n} length-prefixed strings ({len(raw)} bytes given).")
        return out

    @staticmethod
    def size(x) -> int:
        return len(x)

    @staticmethod
    def concat(parts: list):
        return [t for p in parts for t in p]


_CODECS: dict[str, Callable[..., Any]] = {}


def register_codec(modality: str, factory: Callable[..., Any]) -> None:
    _CODECS[modality] = factory


register_codec("vision", lambda meta, **kw: VisionCodec(
    (meta.get("data") or {}).get("input_shape") or meta["model"]["input_shape"],
    tuple((meta.get("data") or {}).get("bounds") or (meta.get("threat") or {}).get("bounds") or (0.0, 1.0)), **kw))
register_codec("text", lambda meta, **kw: TextCodec(**kw))


def codec_for(modality_name: str, meta: dict, **options):
    if modality_name not in _CODECS:
        raise ValueError(f"No serving codec for modality {modality_name!r} (known: {', '.join(sorted(_CODECS))}).")
    return _CODECS[modality_name](meta, **options)
