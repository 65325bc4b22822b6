"""The omni command line: a thin typer shell over :mod:`omni.usecases`."""
