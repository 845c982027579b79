"""mirdata-style dataset loaders."""
