"""camera-recorder: supervised FFmpeg recording with Prometheus observability.

Subpackages by concern, imports pointing down only: `app` (the CLI and the composition root) over
`daemon` (the Recorder) over `camera`, `devices`, `storage` and `transcoding` (siblings that never
import one another) over `ffmpeg`, `footage`, `state`, `config` and `domain`; README's Development
section draws the map and pyproject.toml's import-linter contracts keep it.
"""

__version__ = "0.1.0"
