"""hypr.api."""
