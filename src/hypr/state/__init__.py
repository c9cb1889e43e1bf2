"""hypr.state."""
