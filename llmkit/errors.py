"""Errors a user can cause, and how the CLI turns any error into one message and an exit code.

Code below the CLI raises `UserError` for anything the user can fix (recipe, flags, data,
model/tokenizer mismatch) and lets every other exception propagate; `exit_code_for` and
`describe` are the only places that decide what the user sees.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
from collections.abc import Iterable

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Something the user can fix. `hint` says how; the message says what and where."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


# Writing failed for a reason outside the program: say which, not how it was noticed.
WRITE_FAILURES = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT, errno.EACCES}


class Interrupted(Exception):
    """The run was stopped on request (Ctrl-C, SIGTERM) after writing a resumable checkpoint."""


class RunFailed(Exception):
    """The run itself went wrong (not the user's input), e.g. a loss that became NaN."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def write_failure(error: BaseException) -> str | None:
    """What went wrong, when `error` is a failed write (Rust libraries report the OS error
    inside a plain Exception's text, as "... (os error 27)")."""
    if isinstance(error, OSError) and error.errno in WRITE_FAILURES:
        return f"{error.filename or 'a file'}: {error.strerror}"
    found = re.search(r"\(os error (\d+)\)", str(error))
    if found and int(found.group(1)) in WRITE_FAILURES:
        return f"a file: {os.strerror(int(found.group(1)))}"
    return None


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, UserError):
        return EXIT_USER_ERROR
    if isinstance(error, (KeyboardInterrupt, Interrupted)):
        return EXIT_INTERRUPTED
    return EXIT_RUN_FAILED


def describe(error: BaseException) -> str:
    """The one message printed for an error (the traceback only with LLMKIT_DEBUG=1)."""
    if isinstance(error, UserError):
        return f"error: {error}"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    failure = write_failure(error)
    if failure:
        return (
            f"error: cannot write {failure}\n"
            "  hint: free some space, lift the file-size limit, or choose another --output-dir"
        )
    if isinstance(error, (Interrupted, RunFailed)):
        return f"error: {error}" if isinstance(error, RunFailed) else str(error)
    return (
        f"error: the run failed: {type(error).__name__}: {error}\n"
        "  hint: set LLMKIT_DEBUG=1 to see the traceback"
    )
