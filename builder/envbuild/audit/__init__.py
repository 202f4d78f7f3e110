"""Audits: rebuilds from provenance, vendor archives, image diffs and their reports."""
