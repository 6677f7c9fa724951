"""One exception family, so callers can catch `parity.ParityError` for any bad input.

Each error is also a ValueError/KeyError where that is what Python users would expect.
Messages name the thing, what was expected and what was given.
"""


class ParityError(Exception):
    """Base class of every error parity raises on purpose."""


class SpecError(ParityError, ValueError):
    """An unknown architecture, preset or spec field, or a field value outside its range."""


class StateError(ParityError, ValueError):
    """A canonical state that does not match its layout (all problems listed at once)."""

    def __init__(self, problems: list[str], what: str = "state"):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{what} has {len(self.problems)} problem(s):\n{lines}")


class CheckpointError(ParityError, ValueError):
    """A checkpoint file that is missing, truncated, corrupt or not safetensors."""


class InputError(ParityError, ValueError):
    """Model inputs or targets of the wrong shape or dtype."""


class FrameworkError(ParityError, ValueError):
    """An unknown framework name."""
