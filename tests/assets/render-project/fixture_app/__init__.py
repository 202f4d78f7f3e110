"""The render fixture's package: [image].files copies it into the images."""
