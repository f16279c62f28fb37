"""Writing an output file whole or not at all: a temporary file in the same folder, then a
rename. On any failure the previous file stays as it was and no temporary file is left;
a full disk is the one-line error "no space left on device: PATH" (exit 2).

Outputs of `audit check` (JUnit, markdown, JSON) and the report go through here. The
mechanism itself is runners.rundir.atomic_write_bytes (runners never import audit).
"""

from __future__ import annotations

from pathlib import Path

from audit.errors import AuditError, disk_full_error, is_disk_full
from runners.rundir import atomic_write_bytes


def write_bytes_atomic(path: Path | str, data: bytes, *, what: str = "the output") -> None:
    """Replace `path` by `data` atomically; an OSError becomes an AuditError naming `path`."""
    path = Path(path)
    try:
        if path.is_dir():
            raise AuditError(f"{path}: is a folder; give a file name for {what}")
        target = path.resolve() if path.is_symlink() else path  # replace the file, not the link
        if target.exists() and not target.is_file():
            _write_special(target, data)  # /dev/stdout, a FIFO: nothing to rename over
        else:
            atomic_write_bytes(target, data)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(path) from None
        raise AuditError(
            f"{path}: cannot write {what} ({exc.strerror or exc}); check the folder exists "
            "and is writable"
        ) from None


def _write_special(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def write_text_atomic(path: Path | str, text: str, *, what: str = "the output") -> None:
    """Replace `path` by `text` (UTF-8) atomically; see write_bytes_atomic."""
    write_bytes_atomic(path, text.encode("utf-8"), what=what)
