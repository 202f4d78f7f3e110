"""CI workflows envbuild writes (GitHub Actions)."""
