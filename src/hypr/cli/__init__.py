"""hypr.cli."""
