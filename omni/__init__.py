"""omni: tenant provisioning and deploys for the multi-tenant Medusa platform."""

__version__ = "0.1.0"
