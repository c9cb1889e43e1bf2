"""The Docker Engine API face: the real `docker` CLI, docker-compose and the Docker SDK
drive hypr's VMs through it. Handlers translate Docker's shapes to and from the daemon's
facade, the same services hypr's own API calls; nothing is implemented twice."""
