"""Typed errors: the library raises these, the CLI turns them into one-line messages."""


class WorkbenchError(Exception):
    """An error the user can act on: a message, and optionally a hint saying what to do."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InputError(WorkbenchError):
    """A file or argument given by the user cannot be used."""


class OutputError(WorkbenchError):
    """An output cannot be written: a read-only folder, a full disk, a device where a file belongs."""


class ConfigError(WorkbenchError):
    """A configuration value or file is invalid."""


class NothingGenerated(WorkbenchError):
    """A generator ran and gave nothing the stage could use (no question, no task could be parsed)."""


class ModelLoadError(WorkbenchError):
    """A model or tokenizer could not be loaded."""


class QuantizationError(ModelLoadError):
    """Quantization was asked for but did not happen."""


class HubUnavailableError(WorkbenchError):
    """Something had to come from a hub that cannot be reached."""
