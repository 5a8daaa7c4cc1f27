"""The recordings folder as a whole: accounting of every camera's segments, retention, clips and thumbnails.

`facade`'s `Storage` is what the daemon, the CLI and the supervisors call; it wires the rooms of
`retention/` (index, scans, health, disk pressure, passes and the one worker thread). `recordings_owner` is
the daemon's lock on the folder and the segments it may still be writing, `export` cuts a clip of a time
range by stream copy, `thumbnails` makes a camera's recent picture, and `report` prints `--stats` and
`--cleanup`. Storage knows no camera supervisor and no transcoder: the daemon wires them.
"""
