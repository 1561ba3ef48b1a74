"""The one exception type that means "the user asked for something we cannot do".

The CLI prints a `UserError` as a single line and exits non-zero; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input (missing file, malformed JSON, unknown name)."""
