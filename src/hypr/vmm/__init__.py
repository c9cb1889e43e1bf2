"""hypr.vmm."""
