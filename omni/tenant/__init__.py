"""A tenant: its desired state (spec), secrets and the resources that converge it."""
