"""The envbuild command: click lives here and nowhere else."""
