"""Writing a report folder all or nothing: every file of one render (index.html, report.pdf,
the archive) is first written to a temporary sibling; only when all are on disk are they
renamed into place. A failure (a full disk, a read-only folder) removes the temporary
files and leaves the previous report whole; a file of the previous render that this one
does not produce (report.pdf after --no-pdf) is removed, so the folder never mixes renders."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from audit.errors import AuditError
from audit.report.archive import DESCRIPTIONS

HTML_FILE = "index.html"
PDF_FILE = "report.pdf"
OUTPUTS = (HTML_FILE, PDF_FILE, *DESCRIPTIONS)  # every file a render may write
_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_all(out_dir: Path, files: Mapping[str, bytes]) -> None:
    """Write `files` (name -> bytes) into `out_dir` atomically as a set."""
    out_dir = Path(out_dir)
    staged: list[tuple[Path, Path]] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            staged.append((_stage(out_dir, name, data), out_dir / name))
        for tmp, final in staged:
            os.replace(tmp, final)
        for name in set(OUTPUTS) - set(files):
            with contextlib.suppress(FileNotFoundError):
                (out_dir / name).unlink()
    except BaseException as exc:  # a full disk, or Ctrl-C between two files: no temp stays
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        if isinstance(exc, OSError):
            raise _error(exc, out_dir) from None
        raise


def _stage(out_dir: Path, name: str, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
    try:
        os.fchmod(fd, 0o644)  # a published page, not a private temp file
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        exc.filename = exc.filename or str(out_dir / name)  # say which file did not fit
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def _error(exc: OSError, out_dir: Path) -> AuditError:
    where = exc.filename or out_dir
    if exc.errno in _FULL:
        return AuditError(
            f"no space left on device: {where}; free space and run again "
            "(the previous report, if any, is unchanged)"
        )
    return AuditError(
        f"{where}: cannot write the report ({exc.strerror or exc}); "
        "choose a writable directory with --out / --name"
    )
