"""The CLI's exception type for problems a person can fix."""


class UserError(Exception):
    """Bad input on the command line; the message says what to do. Exit code 1."""
