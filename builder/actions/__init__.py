"""actions: TODO."""
