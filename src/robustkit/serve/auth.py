"""API keys: a JSON keys file holding names and salted scrypt hashes, never a key itself.

A key reads ``rk_<id>_<secret>``: the public ``id`` finds the file's entry, the 256-bit secret is
checked against the entry's scrypt hash with :func:`hmac.compare_digest`. Scrypt is slow on purpose
(a stolen keys file is useless), so a verified key is remembered for the process as an HMAC under a
random per-process secret (still no key in memory tables), and compared in constant time again on
every request. The file is re-read when it changes, so ``robustkit keys revoke`` takes effect within
a second without a restart.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from pathlib import Path

from ..checkpoint import atomic_write_text

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY_RE = re.compile(r"^rk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}  # 16 MiB, ~50 ms per check: the OWASP minimum for scrypt
FILE_FORMAT = "robustkit-keys"


def _hash(secret: str, salt: bytes, params: dict) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=params["n"], r=params["r"], p=params["p"], dklen=32,
                          maxmem=64 * 1024 * 1024)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"The 'name' of a key must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter "
                         f"or digit). Got {name!r} instead.")
    return name


def read_keys_file(path: str | os.PathLike) -> list[dict]:
    """The entries of a keys file (a missing file is an error: serving without keys needs --no-auth)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The keys file {str(path)!r} does not exist. Create it with "
                                f"`robustkit keys add NAME --file {path}`.")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"The keys file {str(path)!r} is not valid JSON ({err}).") from None
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT or not isinstance(doc.get("keys"), list):
        raise ValueError(f"The keys file {str(path)!r} is not a robustkit keys file (format {FILE_FORMAT!r}).")
    return doc["keys"]


def _write(path: Path, entries: list[dict]) -> None:
    atomic_write_text(path, json.dumps({"format": FILE_FORMAT, "version": 1, "keys": entries}, indent=1) + "\n")
    os.chmod(path, 0o600)


def add_key(path: str | os.PathLike, name: str, *, rate_limit: float | None = None, burst: int | None = None) -> str:
    """Create a key named ``name`` in the keys file (created if missing); returns the key, shown only once.

    ``rate_limit`` (requests/s) and ``burst`` override the server's per-key limit for this key."""
    from .._validation import check_number
    path = Path(path)
    _check_name(name)
    if rate_limit is not None:
        check_number(rate_limit, "rate_limit", owner="add_key", low=0)
    if burst is not None:
        check_number(burst, "burst", owner="add_key", low=1, integer=True)
    entries = read_keys_file(path) if path.exists() else []
    if any(e.get("name") == name for e in entries):
        raise ValueError(f"A key named {name!r} already exists in {str(path)!r}; revoke it first or pick another name.")
    key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_bytes(16)
    entries.append({"name": name, "id": key_id, "salt": salt.hex(), "hash": _hash(secret, salt, SCRYPT).hex(),
                    "kdf": {"name": "scrypt", **SCRYPT}, "rate_limit": rate_limit, "burst": burst,
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    _write(path, entries)
    return f"rk_{key_id}_{secret}"


def list_keys(path: str | os.PathLike) -> list[dict]:
    """Name, id and creation time of every key (never a hash or salt)."""
    return [{"name": e["name"], "id": e["id"], "created": e.get("created"), "rate_limit": e.get("rate_limit"),
             "burst": e.get("burst")} for e in read_keys_file(path)]


def revoke_key(path: str | os.PathLike, name: str) -> None:
    entries = read_keys_file(path)
    kept = [e for e in entries if e.get("name") != name]
    if len(kept) == len(entries):
        raise ValueError(f"No key named {name!r} in {str(path)!r}. Known: {', '.join(e['name'] for e in entries) or 'none'}.")
    _write(Path(path), kept)


class KeyStore:
    """Checks presented keys against a keys file; ``authenticate(key) -> name or None``."""

    def __init__(self, path: str | os.PathLike, *, reload_seconds: float = 1.0):
        self.path = Path(path)
        self.reload_seconds = reload_seconds
        self._lock = threading.Lock()
        self._pepper = secrets.token_bytes(32)
        self._dummy_salt = secrets.token_bytes(16)
        self._stamp = None
        self._checked = 0.0
        self._load()

    def _load(self) -> None:
        entries = read_keys_file(self.path)
        st = self.path.stat()
        self._by_id = {e["id"]: e for e in entries}
        self._verified: dict[str, bytes] = {}  # key id -> HMAC(pepper, key) of the key that passed scrypt
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.reload_seconds:
            return
        self._checked = now
        try:
            st = self.path.stat()
            if (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp:
                self._load()
        except (OSError, ValueError):
            self._by_id, self._verified = {}, {}  # a removed or broken file lets nobody in (fail closed)

    def limits_of(self, name: str) -> tuple[float | None, int | None]:
        """The key's own (rate_limit, burst), None where the server's default applies."""
        for e in self._by_id.values():
            if e["name"] == name:
                return e.get("rate_limit"), e.get("burst")
        return None, None

    def __len__(self) -> int:
        return len(self._by_id)

    def cached(self, key: str | None) -> str | None:
        """The key's name if this exact key was verified before (microseconds: HMAC + constant-time compare),
        else None; then :meth:`authenticate` decides (slowly)."""
        if not key:
            return None
        with self._lock:
            self._maybe_reload()
            m = KEY_RE.match(key)
            entry = self._by_id.get(m.group(1)) if m else None
            if entry is not None:
                seen = self._verified.get(entry["id"])
                tag = hmac.new(self._pepper, key.encode(), hashlib.sha256).digest()
                if seen is not None and hmac.compare_digest(seen, tag):
                    return entry["name"]
        return None

    def authenticate(self, key: str | None) -> str | None:
        """The key's name when the key is valid, else None. Never logs or stores the key."""
        if not key:
            return None
        name = self.cached(key)
        if name is not None:
            return name
        with self._lock:
            m = KEY_RE.match(key)
            entry = self._by_id.get(m.group(1)) if m else None
            tag = hmac.new(self._pepper, key.encode(), hashlib.sha256).digest()
        # Slow path outside the lock (scrypt takes ~50 ms); unknown ids pay it too, so timing says nothing.
        if entry is None:
            _hash(m.group(2) if m else "x" * 43, self._dummy_salt, SCRYPT)
            return None
        kdf = {k: entry.get("kdf", SCRYPT)[k] for k in ("n", "r", "p")}
        ok = hmac.compare_digest(_hash(m.group(2), bytes.fromhex(entry["salt"]), kdf), bytes.fromhex(entry["hash"]))
        if not ok:
            return None
        with self._lock:
            if self._by_id.get(entry["id"]) is entry:  # not revoked meanwhile
                self._verified[entry["id"]] = tag
                return entry["name"]
        return None
