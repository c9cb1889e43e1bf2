"""hypr.images."""
