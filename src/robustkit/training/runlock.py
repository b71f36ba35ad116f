"""One writer per run folder: a lock file holding the owner's pid, host and start time.

Two ``train`` commands with the same ``--name`` would interleave their checkpoints, and
``--overwrite`` during a live run would delete it. The lock is created with ``O_EXCL`` (atomic on
local file systems); a lock whose process is gone (same host, no such pid) is stale and taken over,
so a killed run never blocks its own ``--resume``.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
# A lock file with no readable owner is a writer killed between creating and filling it, unless it
# is this young (then its writer may still be filling it).
_UNREADABLE_GRACE_S = 5.0


class RunLockedError(FileExistsError):
    """The run folder is being written by another live process."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_owner(folder: str | os.PathLike) -> dict | None:
    """The lock's owner ``{"pid", "host", "started"}``, or None when the folder is not locked."""
    path = Path(folder) / LOCK_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _stale(path: Path, owner: dict) -> bool:
    if not owner:  # unreadable: stale once it is older than the time a writer needs to fill it
        try:
            return time.time() - path.stat().st_mtime > _UNREADABLE_GRACE_S
        except FileNotFoundError:
            return True
    if owner.get("host") != socket.gethostname():
        return False  # another machine's process cannot be checked from here: never steal its lock
    return not _pid_alive(int(owner.get("pid", -1)))


class RunLock:
    """``with RunLock(run_dir):`` holds the folder for this process; refuses a folder held by a live one."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False
        self._reentrant = False

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                owner = read_owner(self.folder)
                if owner is None:
                    continue  # released between our two calls: try again
                if owner.get("pid") == os.getpid() and owner.get("host") == me["host"]:
                    # This process already holds it (a nested call): the outer holder releases it.
                    self.held, self._reentrant = True, True
                    return self
                if _stale(self.path, owner):
                    log.warning("removing the stale lock of run folder %s (process %s on %s is gone)",
                                self.folder, owner.get("pid", "?"), owner.get("host", "?"))
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunLockedError(
                    f"Run folder {self.folder} is in use by process {owner.get('pid')} on {owner.get('host')} "
                    f"(since {owner.get('started')}). Wait for that run to finish or stop it, or use another "
                    f"--name. If no such process exists any more, delete {self.path}.") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise RunLockedError(f"Could not lock run folder {self.folder}: its lock file {self.path} keeps changing "
                             "(another process is starting a run there).")

    def release(self) -> None:
        if not self.held or self._reentrant:
            self.held = False
            return
        owner = read_owner(self.folder)
        if owner and owner.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
