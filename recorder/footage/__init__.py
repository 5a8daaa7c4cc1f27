"""Footage on disk as every layer sees it: segment files, what was recorded when, whether a folder takes writes.

`segments` names segment files, parses those names and checks a cut-off segment, `recordings` turns the
segments of a time range into stretches and gaps (and parses the times users type), and `write_probe` tests
a folder with a real write and tells a machine's passing resource errors from a folder's faults. No
threads and no FFmpeg runs of its own beyond ffprobe: cameras, storage, transcoding and the exporter share it.
"""
