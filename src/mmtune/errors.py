"""The one exception type that the CLI turns into a single line and exit code 2."""


class InputError(ValueError):
    """Bad input or configuration: the message names the file, key or row, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
