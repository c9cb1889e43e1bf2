"""hypr_build: set-up tools that make the guest assets (kernel, initramfs, busybox image).

Not runtime code: hyprd never imports this package, it only reads what it wrote.
"""
