"""Recordings on disk and the retention that keeps them within bounds, one room per job.

- `model`: the values passed between the rooms (disk usage, index entries, deleted files, reports).
- `index`: SegmentIndex, every camera's segments in memory with totals and write rates.
- `planner`: pure arithmetic and picking: which files a pass deletes, from numbers only.
- `filesystem`: statvfs, the write probe, listing and deleting through directory file descriptors.
- `worker`: the one thread that does the slow work, periodic steps and passes others ask for.
- `state`: what the rooms share (index, counters, filesystem readings, flags), its two locks, the snapshot.
- `accounting`: the counters of what retention did, and the snapshot built from the state.
- `scan`: building the index from disk (the first scan and the resyncs).
- `health`: statvfs readings, the write probe and the supervisors' write failures.
- `pressure`: when a disk_pressure pass is due, the stop_recording flag, the once-per-episode warnings.
- `passes`: one retention pass from start to report, and the periodic check that runs them.

recorder/storage/facade.py's `Storage` is the facade the rest of the recorder uses; it wires the rooms.

Definitions used throughout (the alert rules use the same ones):

- `size`  = f_blocks * f_frsize of the filesystem holding the recordings folder.
- `avail` = f_bavail * f_frsize: what an unprivileged writer such as the recorder may still use (the
  blocks reserved for root count as used).
- `used ratio` = 1 - avail / size.
- A segment's age is measured from the start time its name encodes; its duration is not added, so a
  segment goes once its *first* frame is older than the maximum age.
"""
