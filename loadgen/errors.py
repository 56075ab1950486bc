"""Errors for misuse and configuration faults.

Request failures are data (see records.ErrorInfo), never exceptions. Everything here
reaches the user as one line and exit code 2:

    LoadgenError
    ├── UsageError        bad flags or flag combinations
    │   └── RunOptionError    a run option loadgen run does not have, or a value its flag refuses
    ├── ServerError       the target cannot be used (unreachable, not OpenAI-compatible, 404)
    └── OutputError       the output directory cannot be written
"""

__all__ = ["LoadgenError", "UsageError", "RunOptionError", "ServerError", "ServerNotReady", "OutputError",
           "WorkerLost"]


class LoadgenError(Exception):
    """A fault the user can fix; its message says what was wrong and what to do."""

    exit_code = 2


class UsageError(LoadgenError):
    pass


class RunOptionError(UsageError):
    """What click says of a bad flag, said of a run option given by name (a plan's `run:`), so
    that the plan can name itself before it."""


class ServerError(LoadgenError):
    pass


class OutputError(LoadgenError):
    pass


class WorkerLost(LoadgenError):
    """A load worker process died; the run stops, its partial report is still written."""


class ServerNotReady(ServerError):
    """The server answered but cannot serve yet (429, 5xx, a failed stream): worth waiting for."""
