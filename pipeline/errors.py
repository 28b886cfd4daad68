"""Domain exceptions. A ``PipelineError`` is a user's problem (bad input, bad
option): the CLI prints its one-line message and exits non-zero, no traceback.
Anything else is a bug and keeps its traceback.
"""


class PipelineError(Exception):
    """A problem the user can fix; ``str(error)`` is the one line shown."""

    exit_code = 2


class ConfigError(PipelineError):
    """An unknown or malformed configuration setting."""


class ExtractError(PipelineError):
    """The extract cannot be read: missing folder, table or column, unreadable file."""


class PrivacyError(PipelineError):
    """The extract carries direct identifiers and is refused before anything is stored."""

    exit_code = 3


class ValidationFailed(PipelineError):
    """An error-severity data-quality check failed; nothing is published."""

    exit_code = 4


class StageOrderError(PipelineError):
    """A stage was run before the stage it depends on."""
