"""The one exception type for errors a user can cause and fix.

The CLI prints these as a single line (no traceback) and exits with code 2. Anything else that
escapes is a bug in bertabl and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: the message names the file/key and says how."""


class MatrixError(UserError):
    """A matrix file (or a --set override) does not validate."""


class DataError(UserError):
    """A data file or data source is missing or malformed."""
