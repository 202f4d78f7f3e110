"""Where envbuild keeps its outputs inside a project, in a module light enough for every command to import."""

IMAGES_OUT = ".envbuild/images"  # one OCI layout per variant, with build.json and the supply-chain files
