"""hypr.network."""
