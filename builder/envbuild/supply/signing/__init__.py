"""Signing and verifying images: keys, DSSE envelopes, in-toto statements and Sigstore bundles."""
