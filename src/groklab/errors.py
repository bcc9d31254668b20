"""The one error a user sees: a spec, an option or a file that is wrong, said in one line (exit status 2)."""


class SpecError(ValueError):
    """A spec the user wrote is wrong; the message is one line naming the key and what is allowed."""
