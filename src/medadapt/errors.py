"""Bad input the user can fix: every command prints it as one line and exits with status 2.

Each floor of the package raises its own kind (`ParamsError` for params, `DataError` for data
files, `ModelError` for models and adapters, `StageLockedError` for a busy project); all are
`UserError`s, so a command's entry catches one class and never needs to import the floor that
raised it (`cli.py` stays free of model code).
"""

import sys


class UserError(Exception):
    """A message for the user, naming the file, line and field or the param and its valid values."""


def report(command: str, error: UserError) -> int:
    """Print the error as `medadapt <command>: error: ...` on stderr; the exit status, 2."""
    print(f"medadapt {command}: error: {error}", file=sys.stderr)
    return 2
