"""Errors the command line turns into a one-line message and exit code 2."""


class InputError(Exception):
    """Bad user input (file, row, option): reported in one line, exit code 2, no traceback."""


def where(file, line=None) -> str:
    """`file:line` prefix for messages that point at a row of an input file."""
    return f"{file}:{line}" if line is not None else str(file)
