"""What the exporter reads of a running recorder, as protocols: the HTTP side types against these and never
imports the daemon, its storage or its supervisors (issue 12). Dependency-free apart from snapshots/config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from recorder.config import Config
from recorder.state.snapshots import CameraSnapshot, RecorderSnapshot, StorageSnapshot


class RetentionPassReport(Protocol):
    """What a caller reads of a finished retention pass."""

    @property
    def file_count(self) -> int: ...


class StorageQueries(Protocol):
    """The recordings index and retention, as the operator routes and the webhook use them."""

    @property
    def base_directory(self) -> Path: ...

    def snapshot(self) -> StorageSnapshot: ...

    def segments_between(self, camera: str, start: float, end: float) -> Sequence[tuple[float, str, int, float]]: ...

    def request(self, action: str, trigger: str = "alert", timeout: float = 30.0) -> RetentionPassReport: ...


class CameraStatusSource(Protocol):
    """One camera's supervisor, as far as its current state goes."""

    @property
    def snapshot(self) -> CameraSnapshot: ...


class ToolPaths(Protocol):
    """The FFmpeg binaries the recorder found (None: not found)."""

    @property
    def ffmpeg(self) -> str | None: ...

    @property
    def ffprobe(self) -> str | None: ...


class RecorderView(Protocol):
    """Everything the exporter reads of the recorder: its snapshot, configuration, storage, tools and the
    per-camera supervisors (looked up by camera id; a reload replaces the mapping)."""

    @property
    def config(self) -> Config: ...

    @property
    def storage(self) -> StorageQueries: ...

    @property
    def tools(self) -> ToolPaths: ...

    @property
    def supervisors(self) -> Mapping[str, CameraStatusSource]: ...

    def snapshot(self) -> RecorderSnapshot: ...
