"""Dockerfile builds: the language, build contexts, the layer cache and the steps."""
