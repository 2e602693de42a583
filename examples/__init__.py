"""Demo applications for bayeux-trio: see examples/README.md."""
