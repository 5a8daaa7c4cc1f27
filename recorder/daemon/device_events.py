"""The daemon's side of hot-plug: one monitor per configuration, its add/remove routed to the cameras'
supervisors, and the udev events counted for the exporter."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Mapping

import pyudev

from recorder.camera.supervisor import CameraSupervisor
from recorder.config import CameraConfig, Config, SourceKind
from recorder.devices.hotplug import HotplugMonitor

# The daemon's log name, as before the Recorder was split into rooms.
log = logging.getLogger("recorder.daemon")


def udev_context() -> pyudev.Context | None:
    """The daemon's one pyudev context (shared by the monitor and the supervisors' device lookups)."""
    try:
        return pyudev.Context()
    except (ImportError, OSError) as exc:
        log.info("no udev database (%s): cameras found by match need their by-id links", exc)
        return None


def device_cameras(config: Config) -> list[CameraConfig]:
    """The enabled cameras the hot-plug monitor watches for: USB/V4L2 devices."""
    return [c for c in config.enabled_cameras if c.source is SourceKind.DEVICE]


class DeviceEvents:
    """Builds the hot-plug monitor for a configuration and hands each camera's coming and going to its
    supervisor (looked up at each event: a reload replaces the supervisors)."""

    def __init__(
        self, supervisors: Callable[[], Mapping[str, CameraSupervisor]], context: pyudev.Context | None
    ) -> None:
        self._supervisors = supervisors
        self.context = context
        # (udev action, whether it concerned a configured camera) -> events seen; kept across reloads.
        self.events: collections.Counter[tuple[str, bool]] = collections.Counter()

    def new_monitor(self, config: Config) -> HotplugMonitor:
        return HotplugMonitor(
            device_cameras(config),
            on_add=self._device_added,
            on_remove=self._device_removed,
            on_event=self._count,
            use_udev=config.system.udev,
            poll_interval=config.supervisor.presence_check_interval,
            context=self.context,  # one pyudev context for the daemon, not one per user
        )

    def _device_added(self, camera_id: str, node: str) -> None:
        log.info("camera %s appeared at %s", camera_id, node)
        supervisor = self._supervisors().get(camera_id)
        if supervisor is not None:
            supervisor.device_added()

    def _device_removed(self, camera_id: str, node: str) -> None:
        log.warning("camera %s was unplugged (%s)", camera_id, node)
        supervisor = self._supervisors().get(camera_id)
        if supervisor is not None:
            supervisor.device_removed()

    def _count(self, action: str, matched: bool) -> None:
        self.events[(action, matched)] += 1
