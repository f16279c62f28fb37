"""The harness's bad-input exception, its exit codes, and reading an input file with errors in
its terms.

Exit codes of every `audit` verb (docs/errors.md):

    0    success (`audit check`: every gated claim within tolerance)
    1    claims not within tolerance (`audit check`, and `audit run`'s failed runs)
    2    bad input: a file, flag, store or environment the user can fix; one line on stderr
    3    a bug in the harness: one line on stderr naming a file that holds the traceback
    130  interrupted (Ctrl-C)
    141  stdout was closed early (`audit ... | head`): nothing more is printed
"""

import errno
from pathlib import Path

EXIT_OK = 0
EXIT_NOT_WITHIN_TOLERANCE = 1
EXIT_BAD_INPUT = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130
EXIT_CLOSED_STDOUT = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`

# A full disk or an exhausted quota: the environment, not the input, but fixable the same way.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class AuditError(Exception):
    """Bad input to the harness: the message names what, where, and how to fix it.

    `audit` prints it as one line without a traceback and exits with `exit_code`.
    """

    exit_code = EXIT_BAD_INPUT


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from or during) is a full disk."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(path: Path | str) -> AuditError:
    """The one message every verb gives for a full disk while writing under `path`."""
    return AuditError(
        f"no space left on device: {path}; free some space (or choose another folder) and run "
        "the command again"
    )


def read_utf8(path: Path, what: str, *, encoding: str = "utf-8", limit: int | None = None) -> str:
    """The text of input file `path` ("the claims file", "the results CSV", ...).

    An unreadable file, a file larger than `limit` bytes, or bytes that are not UTF-8 become
    one AuditError naming the file (and the line and byte offset of the first bad byte).
    `encoding="utf-8-sig"` also accepts a byte-order mark.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise AuditError(f"{path}: is a folder, not {what}; give the file's path")
        if limit is not None and path.stat().st_size > limit:
            raise AuditError(
                f"{path}: {what} is larger than {limit // 2**20} MiB; that is not a file this "
                "harness reads (check the path)"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise AuditError(f"{path}: cannot read {what} ({exc.strerror})") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        short = "the CSV" if what.endswith("CSV") else "the file"
        raise AuditError(
            f"{path}:{line}: not UTF-8 text (byte {exc.start}: 0x{raw[exc.start]:02x}); "
            f"save {short} as UTF-8"
        ) from None
