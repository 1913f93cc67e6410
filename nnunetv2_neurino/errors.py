"""The one exception type user-facing code raises for bad input.

The CLI prints its message (which names the file, field or key at fault) and exits with status 2.
"""


class NeurinoError(Exception):
    """Bad input or an unmet precondition, with a message meant for the user."""
