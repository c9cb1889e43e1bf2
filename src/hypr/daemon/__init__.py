"""hypr.daemon."""
