"""USB cameras as devices: which node is which configured camera, when they come and go, and what they offer.

`identity` matches nodes to cameras (path, serial, port, USB id, by-id link) and suggests a config block for
an unknown one, `tracker` turns udev events into add and remove calls, `hotplug` is the monitor thread
(udev netlink or polling), and `v4l2/` detects devices and their modes for `--detect` and preflight.
"""
