"""The HTTP side of camera-recorder: reads the recorder's snapshots, never the other way round.

`serve()` is the one call the composition root (recorder/app/cli.py) makes to put a recorder on the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exporter.server import ExporterServer
    from exporter.webconfig import WebOptions
    from recorder.config import ExporterConfig
    from recorder.state.ports import RecorderView


def serve(recorder: RecorderView, config: ExporterConfig, web: WebOptions | None = None) -> ExporterServer:
    """Bind the exporter's listener for `recorder` and start serving (ListenError: the address is refused).

    Imported here rather than at the top so that `import exporter.metrics` stays light (tests, the bundle
    checks and the README generator read the metric table without loading the HTTP stack).
    """
    from exporter.server import ExporterServer

    server = ExporterServer(config, recorder, web)
    server.start()
    return server
