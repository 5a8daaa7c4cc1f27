"""The exporter's routes beyond /metrics, each a plain function of a request that answers from snapshots.

`operator` serves the recordings listing, clips (`/api/v1/export`) and thumbnails; `webhook` takes
Alertmanager's notifications and asks retention to act on them; `status_page` renders the HTML page.
`exporter/server.py` maps paths to them and `exporter/web.py` carries them over HTTP.
"""
