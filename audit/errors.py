"""The harness's bad-input exception."""


class AuditError(Exception):
    """Bad input to the harness: the message names what, where, and how to fix it.

    `audit` prints it as one line without a traceback and exits with `exit_code`.
    """

    exit_code = 2
