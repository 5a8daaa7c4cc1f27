"""Night transcoding: old segments re-encoded in a quiet window, verified before the original goes.

Modules: `gate` (the local-time window and when to yield to the recorder), `ledger` (segments already done
or not worth it), `planner` (what is due, oldest first), `verify` (ffprobe, full decode, SSIM), `swap` (the
crash-safe replacement and its recovery at start), `originals` (kept originals and retention's reclaimer),
`pausable` (the idle-priority children the gate stops and continues), `job` (one segment: encode, verify,
swap), `counters` (what the metrics read), `worker` (the recordings' lock, one transcoder per folder, and the
transcoder and its thread inside the daemon) and `service` (the daemon's wiring and the capacity retention
counts on). The CLI's `--transcode` lives in recorder/app/transcode_cli.py.
"""
