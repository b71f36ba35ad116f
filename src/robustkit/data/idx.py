"""Reader for the IDX format of (Fashion-)MNIST, gzip-compressed or not.

Magic numbers and sizes are checked, so a truncated or foreign file is a clear error, not garbage.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

# Third byte of the magic number -> numpy dtype (big-endian as the format specifies).
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IDXFormatError(ValueError):
    pass


def read_idx(path: str | Path, *, expected_dims: int | None = None) -> np.ndarray:
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise IDXFormatError(f"IDX file {path} is a damaged gzip stream ({err}); download it again.") from None
    if len(raw) < 4:
        raise IDXFormatError(f"IDX file {path} is too short to hold a header ({len(raw)} bytes).")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in _DTYPES or ndim == 0:
        raise IDXFormatError(f"File {path} is not an IDX file: magic bytes {raw[:4].hex()} "
                             "(expected 0000 08 0N for unsigned-byte IDX data).")
    if expected_dims is not None and ndim != expected_dims:
        raise IDXFormatError(f"IDX file {path} has {ndim} dimensions; expected {expected_dims} "
                             f"({'images' if expected_dims == 3 else 'labels'}).")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXFormatError(f"IDX file {path} is truncated inside its header.")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_DTYPES[dtype_code])
    expected = int(np.prod(dims)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        raise IDXFormatError(f"IDX file {path} is truncated or corrupt: header promises shape {dims} "
                             f"({expected} bytes of data) but the file holds {got} bytes.")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
