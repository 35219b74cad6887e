"""The one exception type genzoo raises for bad input; the CLI prints it as a paragraph."""


class GenzooError(Exception):
    """A user-facing error: the message says what went wrong and what to do."""
