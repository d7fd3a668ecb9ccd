"""User-facing errors: one line naming the input and the fix."""


class UserError(Exception):
    """An error the user caused and can fix; the CLI prints its message on one line and exits 2."""


class Cancelled(Exception):
    """Raised inside long work when the injected `cancelled()` callable returns True."""
