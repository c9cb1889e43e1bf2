"""hypr.guest."""
