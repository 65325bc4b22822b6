"""ACME (RFC 8555) issuance for tenant certificates, on certbot's ``acme`` library.

omni runs the ACME client itself; only files travel to the host (through its transport):
the account key, HTTP-01 challenge files in the host's webroot, and the issued key and chain.
"""
