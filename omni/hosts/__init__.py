"""Host sessions: transport, tunnelled Postgres, Docker over the same connection, locks.

Import the submodules directly (``omni.hosts.session``); this package imports nothing heavy.
"""
