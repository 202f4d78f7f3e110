"""OCI types: references, digests, layouts, canonical layers and images, files read from layers."""
