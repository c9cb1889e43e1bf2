"""hypr.compose."""
