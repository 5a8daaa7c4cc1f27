"""camera-recorder: supervised FFmpeg recording with Prometheus observability."""

__version__ = "0.1.0"
