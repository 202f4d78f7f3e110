"""The supply chain: signing, SBOM, provenance, attestations, trust policy, verification, release."""
