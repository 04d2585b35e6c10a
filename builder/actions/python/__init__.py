"""actions.python: TODO."""
