"""Night transcoding: old segments re-encoded in a quiet window, verified before the original goes.

Modules: `window` (the local-time window), `gate` (when to yield to the recorder), `ledger` (segments
already done or not worth it), `planner` (what is due, oldest first), `verify` (ffprobe, full decode,
SSIM), `swap` (the crash-safe replacement and its recovery at start), `originals` (kept originals and
retention's reclaimer), `capacity`, `lock` (one transcoder per recordings folder), `pausable` (the
idle-priority children the gate stops and continues), `job` (one segment: encode, verify, swap),
`counters` (what the metrics read), `worker` (the transcoder and its thread inside the daemon),
`service` (the daemon's wiring) and `report` (the CLI).
"""
