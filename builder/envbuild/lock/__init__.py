"""The spec and the lock: variants, lockfiles, staleness, guards, pinned bases, resolvers."""
