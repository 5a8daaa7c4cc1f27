"""One camera kept recording: its supervisor thread, the state machine it moves through, and what it publishes.

`supervisor` is the loop (with the source's presence and the wake-up pipe it sleeps on), `run` starts and
watches one FFmpeg run at a time and sums it up as a `RunEnd` (with the segments it reports), `states` holds
the states, their transition table and the backoff, `report` the published `CameraSnapshot`, `storage_gate`
the camera folder's checks around each start, and `ledger` what a camera's earlier supervisors counted, so
a reload's new supervisor goes on from there. A camera knows nothing of storage, devices or transcoding:
the daemon wires it to them through callbacks.
"""
