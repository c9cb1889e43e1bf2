"""`GET /containers/json?filters=` and `POST /containers/prune?filters=`: which containers a
Docker filter selects. Values of one key are ORed, keys are ANDed, as Docker's are."""

from __future__ import annotations

from collections.abc import Callable

from hypr.api.docker.container_views import docker_state, exit_status
from hypr.api.docker.filters import (
    Filters,
    match_any,
    match_labels,
    match_prefix,
    prune_selector,
    rfc3339_nanos,
)
from hypr.daemon.views import ContainerDetails
from hypr.errors import InvalidArgument
from hypr.state.vms import VmRecord

LIST_FILTERS = (
    "ancestor", "before", "exited", "health", "id", "label", "name", "network", "since",
    "status", "volume",
)  # fmt: skip
PRUNE_FILTERS = ("label", "label!", "until")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
HEALTHS = ("starting", "healthy", "unhealthy", "none")

Check = Callable[[ContainerDetails, list[str]], bool]


def selector(
    wanted: Filters, image_ids: Callable[[str], str], created_of: Callable[[str], str]
) -> Callable[[ContainerDetails], bool]:
    """The list filter: `image_ids` gives the id of an image reference (`ancestor`), or ""
    for none; `created_of` the creation time of a container reference (`before`, `since`)."""
    for value in wanted.get("status", []):
        if value not in STATUSES:
            raise InvalidArgument(f"invalid filter 'status={value}'")
    for value in wanted.get("health", []):
        if value not in HEALTHS:
            raise InvalidArgument(f"invalid filter 'health={value}'")
    before = [rfc3339_nanos(created_of(ref)) for ref in wanted.get("before", [])]
    since = [rfc3339_nanos(created_of(ref)) for ref in wanted.get("since", [])]
    ancestors = {image_ids(ref) for ref in wanted.get("ancestor", [])} - {""}
    checks: dict[str, Check] = {
        "id": lambda c, values: match_prefix(values, c.details.vm.id),
        "name": lambda c, values: match_any(values, f"/{c.details.vm.name}"),
        "label": lambda c, values: match_labels(values, c.details.vm.spec.labels),
        "status": lambda c, values: docker_state(c.details.vm) in values,
        "network": lambda c, values: any(
            nic.network in values or match_prefix(values, nic.network_id) for nic in c.details.nics
        ),
        "ancestor": lambda c, values: c.image_id in ancestors or c.details.vm.image in values,
        "exited": lambda c, values: (
            docker_state(c.details.vm) == "exited"
            and str(exit_status(c.details.vm.exit_code, c.details.vm.error)) in values
        ),
        "health": lambda c, values: (c.health or "none") in values,
        "volume": lambda c, values: any(
            m.source in values or m.target in values for m in c.details.vm.spec.mounts
        ),
        "before": lambda c, values: all(rfc3339_nanos(c.details.vm.created) < t for t in before),
        "since": lambda c, values: all(rfc3339_nanos(c.details.vm.created) > t for t in since),
    }

    def selected(c: ContainerDetails) -> bool:
        return all(check(c, wanted[key]) for key, check in checks.items() if key in wanted)

    return selected


def prunable(wanted: Filters) -> Callable[[VmRecord], bool]:
    return prune_selector(wanted, lambda vm: vm.spec.labels, lambda vm: vm.created)
