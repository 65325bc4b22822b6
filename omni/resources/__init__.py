"""Resources: one piece of a tenant each, with observe / plan (pure) / apply.

Modules are imported by the use cases that need them (heavy libraries load lazily).
``acme.certificate`` must be applied before ``nginx.vhost``: the vhost's HTTPS server needs
the certificate's files, and the host's catch-all ACME server answers the first challenge.
"""
