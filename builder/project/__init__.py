"""project: TODO."""
