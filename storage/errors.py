"""The project's exception hierarchy (here because storage is the package all others use).

User mistakes derive from `UserInputError` and carry the fix in their message; the CLI
turns them into one ``Error: ...`` line and exit code 2. Anything else is a bug.
"""


class LattsError(Exception):
    """Base of every latts-tune exception."""


class UserInputError(LattsError):
    """A mistake the user can fix; the message says what is wrong and how to fix it."""


class StorageUnavailable(UserInputError):
    """The database URL is invalid, unreachable or not writable."""


class StorageError(LattsError):
    """A database operation failed unexpectedly."""
