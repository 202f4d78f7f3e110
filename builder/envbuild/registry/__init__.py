"""The OCI registry client: references, auth, blob and manifest transfer, referrers.

Everything in envbuild that talks to a registry goes through :class:`RegistryClient`.
"""
