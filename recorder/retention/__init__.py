"""Recordings on disk and the retention that keeps them within bounds, one room per job.

- `model`: the values passed between the rooms (disk usage, index entries, deleted files, reports).
- `index`: SegmentIndex, every camera's segments in memory with totals and write rates.
- `planner`: pure arithmetic and picking: which files a pass deletes, from numbers only.
- `filesystem`: statvfs, the write probe, listing and deleting through directory file descriptors.
- `worker`: the one thread that does the slow work, periodic steps and passes others ask for.

recorder/storage.py's `Storage` is the facade the rest of the recorder uses.

Definitions used throughout (the alert rules use the same ones):

- `size`  = f_blocks * f_frsize of the filesystem holding the recordings folder.
- `avail` = f_bavail * f_frsize: what an unprivileged writer such as the recorder may still use (the
  blocks reserved for root count as used).
- `used ratio` = 1 - avail / size.
- A segment's age is measured from the start time its name encodes; its duration is not added, so a
  segment goes once its *first* frame is older than the maximum age.
"""
