"""A disk that fails part-way through a run (full, read-only, permissions taken away, unmounted) is one
line: the path, what happened, what to do, and the last good checkpoint to resume from.

Checkpoints are written atomically (deco.train.rundir.checkpoint), so a failed save leaves the previous one
usable; the message names it. safetensors reports I/O failures as its own SafetensorError carrying the
OS error code in its text; `io_error` turns those back into an OSError.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

_ADVICE = {
    errno.ENOSPC: "free space on that disk, or continue in another train.output_dir (copy the run folder there)",
    errno.EDQUOT: "the disk quota is used up: free space, or continue in another train.output_dir",
    errno.EACCES: "make the folder writable by this user again",
    errno.EPERM: "make the folder writable by this user again",
    errno.EROFS: "the file system is read-only now: remount it writable, or continue on another disk",
    errno.ENOENT: "a folder of the run disappeared (deleted, or its disk unmounted): restore it",
    errno.EIO: "the disk reports an I/O error: check it before continuing",
}


def io_error(exc: BaseException, path: str | Path | None = None) -> OSError | None:
    """`exc` as an OSError when it is one or a safetensors-wrapped I/O error (naming `path`); else None."""
    if isinstance(exc, OSError):
        return exc
    if type(exc).__name__ == "SafetensorError" and "IoError" in str(exc):
        found = re.search(r"code: (\d+)", str(exc))
        code = int(found.group(1)) if found else errno.EIO
        return OSError(code, os.strerror(code), None if path is None else str(path))
    return None


def describe(exc: OSError, run_dir: Path, last_checkpoint: Path | None) -> str:
    """The one line for an OSError met while training (the CLI prints it after 'error: ')."""
    where = exc.filename if exc.filename is not None else run_dir
    reason = exc.strerror or str(exc)
    advice = _ADVICE.get(exc.errno, "check the disk and the run folder")
    if last_checkpoint is not None:
        kept = f"the last good checkpoint is {last_checkpoint}; once fixed, continue with --resume"
    elif not Path(run_dir).is_dir():
        kept = f"no checkpoint of this run is left ({run_dir} is gone); restore it and --resume, or start again"
    else:
        kept = "no checkpoint had been written yet; once fixed, start again"
    return f"training stopped: {where}: {reason}; {advice}; {kept}"
