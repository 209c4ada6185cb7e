"""The one exception type a user sees: a message that names the problem and the fix."""


class NasError(Exception):
    """A user-facing error. ``str(err)`` is a single line: what went wrong and how to fix it.

    >>> from nas import NasError, load_design
    >>> try:
    ...     load_design("seed999")
    ... except NasError as err:
    ...     print(str(err).split(";")[0])
    unknown design 'seed999' (known: ...)
    """


class SpecError(NasError):
    """An architecture spec that cannot be built: bad field, or a layer whose shapes do not fit."""

    def __init__(self, message: str, layer: int | None = None):
        self.layer = layer
        super().__init__(message if layer is None else f"layer {layer}: {message}")
