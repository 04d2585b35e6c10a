"""store: TODO."""
