"""Results of use cases and how they are shown: the JSON envelope and the human view."""

from omni.output.result import ENVELOPE_VERSION, Result

__all__ = ["ENVELOPE_VERSION", "Result"]
