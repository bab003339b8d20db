"""One writer per run: an exclusive lock file naming its holder (pid, host, start time).

The exclusion itself is an OS file lock (`fcntl.flock`), which the kernel drops when the holder
dies, even by SIGKILL; the JSON inside only names the holder for messages. A clean exit deletes the
file, so a lock file found unlocked means its writer died without cleaning up: it is stale, and the
new holder says whose it was. flock is per host; on network file systems that do not share it, two
hosts are not kept apart (the message names the host so a person can tell).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deco.errors import DecoError

LOCK_NAME = ".deco.lock"

# Descriptors of the locks this process holds. A forked child (a DataLoader worker) inherits them, and
# flock belongs to the shared open file, so a child outliving its killed parent would keep the run
# locked; children close their copies at once (closing, not unlocking: the parent keeps its lock).
_HELD: set[int] = set()


def _close_in_child() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class RunLocked(DecoError):
    """Another live process holds the lock of this run directory or output file."""


def _holder_text(info: dict[str, Any]) -> str:
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}"
            + (f" ({info['command']})" if info.get("command") else ""))


def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        info = {}
    return info if isinstance(info, dict) else {}


class FileLock:
    """An exclusive, non-blocking lock at `path`; `acquire` raises RunLocked naming the live holder."""

    def __init__(self, path: str | Path, what: str, command: str = "") -> None:
        self.path, self.what, self.command = Path(path), what, command
        self._fd: int | None = None
        self._owner: int | None = None
        self.stale: dict[str, Any] | None = None  # the dead holder found on acquire, if any

    def acquire(self) -> FileLock:
        """Take the lock (the folder must exist); remembers a stale holder in `self.stale`."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise RunLocked(
                    f"{self.what} is in use by another process: {_holder_text(holder)} (lock file {self.path}); "
                    "wait for it to finish, or choose another output"
                ) from None
            # The holder we waited on may have deleted the file between our open and flock: then we
            # hold a lock on a file nobody else will open. Retry on the file now at the path.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        old = _read(fd)
        if old.get("pid") not in (None, os.getpid()):
            self.stale = old
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": self.command}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
        self._fd, self._owner = fd, os.getpid()
        _HELD.add(fd)
        return self

    def stale_message(self) -> str | None:
        """'took over a stale lock ...' when the previous holder died without releasing it."""
        if self.stale is None:
            return None
        return (f"warning: {self.what} had a stale lock from a process that is gone: {_holder_text(self.stale)}; "
                "it did not exit cleanly (killed?), taking over")

    def release(self) -> None:
        """Delete the file and drop the lock (deleting first, so a waiter never locks a dead file)."""
        if self._fd is None or self._owner != os.getpid():  # a forked child's copy owns nothing
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        _HELD.discard(self._fd)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def locked(path: str | Path, what: str, command: str = "",
           say: Callable[[str], Any] | None = None) -> Iterator[FileLock]:
    """Hold a FileLock for the block; a stale holder is reported through `say` (if given)."""
    lock = FileLock(path, what, command).acquire()
    message = lock.stale_message()
    if message and say is not None:
        say(message)
    try:
        yield lock
    finally:
        lock.release()

