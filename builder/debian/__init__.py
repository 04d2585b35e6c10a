"""debian: TODO."""
