"""Use cases: one function per job, called by the CLI and the Windmill scripts alike.

Each takes plain inputs (paths, names, an inventory) and returns an
:class:`omni.output.Result`; none prints. Heavy libraries (paramiko, psycopg, docker) are
imported lazily inside, so importing this package stays fast.
"""
