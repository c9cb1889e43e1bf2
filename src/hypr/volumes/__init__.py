"""Volumes: named and anonymous data directories on the host, and the mount syntax that
puts them (and bind mounts and tmpfs) into a VM."""
