"""Images: Dockerfiles, hash-checked inputs, bases, builders, the build and its record."""
