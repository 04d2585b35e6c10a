"""layers: TODO."""
