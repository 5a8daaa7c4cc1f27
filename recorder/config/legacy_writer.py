"""Write a validated configuration back in the original scripts' camera-mapping.conf form.

Apart from recorder/config/legacy.py (which reads that form into a raw mapping for recorder/config/ to validate),
so that the reader knows nothing of Config and config and legacy do not import each other.
"""

from __future__ import annotations

import shlex

from recorder.config import CameraConfig, Config, SourceKind


def config_to_legacy(config: Config) -> tuple[str, list[str]]:
    """The camera-mapping.conf text of a config, and what cannot be said in that format."""
    lines = ["# camera-mapping.conf written by camera-recorder --convert-config --to legacy"]
    unsupported: list[str] = []

    def put(key: str, value: object) -> None:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        # The original scripts `source` this file: anything bash would expand must be single-quoted.
        quoted = shlex.quote(text) if any(c in text for c in '"$`\\\n') else f'"{text}"'
        lines.append(f"{key}={quoted}")

    for index, cam in enumerate(config.cameras, start=1):
        why = _no_legacy_form(cam)
        if why is not None:
            unsupported.append(f"cameras.{cam.id}: {why}")
            continue
        if cam.id != f"cam{index}":
            unsupported.append(f"cameras.{cam.id}: written as CAMERA{index} (legacy ids are numbered)")
        prefix = f"CAMERA{index}_"
        put(prefix + "DEVICE", cam.location)
        put(prefix + "NAME", cam.name)
        if cam.resolution:
            put(prefix + "RESOLUTION", cam.resolution)
        if cam.framerate:
            put(prefix + "FRAMERATE", cam.framerate)
        if cam.input_format:
            put(prefix + "FORMAT", cam.input_format)
        if not cam.enabled:
            unsupported.append(f"cameras.{cam.id}.enabled: false has no legacy form")
        if cam.match is not None:
            unsupported.append(f"cameras.{cam.id}.match: has no legacy form")
        if cam.cleanup_days is not None:
            unsupported.append(f"cameras.{cam.id}.cleanup_days: has no legacy form")
    e, r, s = config.encoding, config.recording, config.storage
    put("ENCODING_CODEC", e.codec.value)
    put("ENCODING_PRESET", e.preset)
    put("ENCODING_QUALITY", e.quality)
    put("LOOKAHEAD_ENABLED", int(e.lookahead))
    put("BITRATE_MODE", e.bitrate_mode.value)
    put("TARGET_BITRATE", e.target_bitrate)
    put("MAX_BITRATE", e.max_bitrate)
    put("GOP_SIZE", e.gop_size)
    put("REF_FRAMES", e.ref_frames)
    put("EXTRA_HW_FRAMES", e.extra_hw_frames)
    put("SEGMENT_TIME", r.segment_time)
    put("CONTAINER_FORMAT", r.container_format.value)
    put("FLUSH_PACKETS", int(r.flush_packets))
    if r.movflags:
        put("MOVFLAGS", r.movflags)
    put("RECORDINGS_BASE", r.base_directory)
    put("CLEANUP_ENABLED", s.cleanup_enabled)
    put("CLEANUP_DAYS", f"{s.cleanup_days:g}")
    put("DISK_USAGE_THRESHOLD", f"{s.disk_usage_threshold:g}")
    put("LOW_SPACE_WARNING", f"{s.low_space_warning:g}")
    put("MONITORING_INTERVAL", f"{s.check_interval:g}")
    put("VAAPI_DRIVER", config.vaapi_driver)
    put("DEBUG_LOGGING", int(config.log_level == "DEBUG"))
    if config.log_level not in ("DEBUG", "INFO"):
        unsupported.append(f"log_level: {config.log_level} has no legacy form (DEBUG_LOGGING is on or off)")
    defaults = Config(cameras=())
    for section in ("supervisor", "exporter", "system", "transcoding"):
        if getattr(config, section) != getattr(defaults, section):
            unsupported.append(f"{section}: has no legacy form")
    if r.align_segments:
        unsupported.append("recording.align_segments: has no legacy form")
    if s.pressure_target is not None or s.min_free_minutes != defaults.storage.min_free_minutes:
        unsupported.append("storage.pressure_target/min_free_minutes: have no legacy form")
    if s.on_threshold != defaults.storage.on_threshold:
        unsupported.append("storage.on_threshold: has no legacy form")
    if s.resync_interval != defaults.storage.resync_interval:
        unsupported.append("storage.resync_interval: has no legacy form")
    return "\n".join(lines) + "\n", unsupported


def _no_legacy_form(cam: CameraConfig) -> str | None:
    """Why a camera cannot be written to camera-mapping.conf, or None when it can."""
    if cam.source is not SourceKind.DEVICE or not cam.location:
        what = "a camera found by match" if cam.match is not None else f"a {cam.source.value} source"
        return f"{what} has no legacy form"
    return None


def dropped_cameras(config: Config) -> list[tuple[str, str]]:
    """(camera id, why) of the cameras `config_to_legacy` leaves out."""
    return [(cam.id, why) for cam in config.cameras if (why := _no_legacy_form(cam)) is not None]
