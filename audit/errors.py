"""The harness's bad-input exception, and reading an input file with errors in its terms."""

from pathlib import Path


class AuditError(Exception):
    """Bad input to the harness: the message names what, where, and how to fix it.

    `audit` prints it as one line without a traceback and exits with `exit_code`.
    """

    exit_code = 2


def read_utf8(path: Path, what: str, *, encoding: str = "utf-8") -> str:
    """The text of input file `path` ("the claims file", "the results CSV", ...).

    An unreadable file, or bytes that are not UTF-8, become one AuditError naming the file (and
    the line of the first bad byte). `encoding="utf-8-sig"` also accepts a byte-order mark.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise AuditError(f"{path}: cannot read {what} ({exc.strerror})") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        short = "the CSV" if what.endswith("CSV") else "the file"
        raise AuditError(f"{path}:{line}: not UTF-8 text; save {short} as UTF-8") from None
