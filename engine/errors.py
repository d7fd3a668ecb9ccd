"""User-facing errors: one line naming the input and the fix.

`environment_error` turns what the operating system or GDAL says about a file (disk full, permission
denied, name too long, ...) into such a line.
"""
from __future__ import annotations

import errno
import os


class UserError(Exception):
    """An error the user caused and can fix; the CLI prints its message on one line and exits 2."""


class Cancelled(BaseException):
    """The run was cancelled: the injected `cancelled()` callable returned True, or the CLI got SIGTERM.

    A BaseException (like KeyboardInterrupt) so that `except Exception` around I/O never swallows a cancel.
    """


_FIXES = {
    errno.ENOSPC: "free disk space there or choose another folder",
    errno.EDQUOT: "free space within your disk quota or choose another folder",
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "it is on a read-only file system; choose another folder",
    errno.ENAMETOOLONG: "choose a shorter name (at most 255 bytes per file or folder name)",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "check the path: a part of it is a file, not a folder",
    errno.EISDIR: "it is a folder; give a file",
    errno.EIO: "the disk or network share failed; check it and run again",
    errno.EFBIG: "the file grew beyond what the file system or your limits (ulimit -f) allow; choose another folder",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
    errno.ENFILE: "too many open files on this system; close some programs",
}
# What GDAL, SQLite and libtiff say where the operating system would give an errno.
_MESSAGES = (
    ("disk is full", errno.ENOSPC), ("no space left", errno.ENOSPC), ("quota", errno.EDQUOT),
    ("permission denied", errno.EACCES), ("read-only", errno.EROFS), ("readonly", errno.EROFS),
    ("file name too long", errno.ENAMETOOLONG), ("file too large", errno.EFBIG), ("disk i/o error", errno.EIO),
    ("input/output error", errno.EIO),
)


def error_code(exc: BaseException) -> int | None:
    """The errno of an OSError, or the one GDAL's or SQLite's message implies (None when unknown)."""
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    text = str(exc).lower()
    return next((code for needle, code in _MESSAGES if needle in text), None)


def environment_error(path: str | os.PathLike | None, exc: BaseException,
                      action: str = "cannot be written") -> UserError:
    """A failure of the file system or GDAL on `path` -> UserError "'PATH': ACTION (WHY); FIX"."""
    code = error_code(exc)
    if isinstance(exc, OSError) and exc.strerror:
        why = exc.strerror
    else:
        lines = str(exc).strip().splitlines()
        why = lines[0] if lines else type(exc).__name__
    fix = _FIXES.get(code, "check free disk space, permissions and file-size limits (ulimit -f) there, then run again")
    where = f"'{path}'" if path is not None else (f"'{exc.filename}'" if getattr(exc, "filename", None) else "a file")
    return UserError(f"{where}: {action} ({why[:160]}); {fix}")
