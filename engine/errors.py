"""User-facing errors: one line naming the input and the fix."""


class UserError(Exception):
    """An error the user caused and can fix; the CLI prints its message on one line and exits 2."""


class Cancelled(BaseException):
    """The run was cancelled: the injected `cancelled()` callable returned True, or the CLI got SIGTERM.

    A BaseException (like KeyboardInterrupt) so that `except Exception` around I/O never swallows a cancel.
    """
