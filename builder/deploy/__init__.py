"""deploy: TODO."""
