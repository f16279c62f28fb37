"""The one exception type a runner raises for bad input (missing data, invalid spec)."""


class RunnerInputError(Exception):
    """Bad input to a runner. The message says what is wrong, where, and how to fix it.

    Command-line front ends print the message alone (no traceback) and exit with code 2;
    the harness records it as the reason of a failed run.
    """
