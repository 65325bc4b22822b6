"""Transports: run argv, read and write files on a host (SSH or local)."""

from omni.transport.base import CommandResult, Transport

__all__ = ["CommandResult", "Transport"]
