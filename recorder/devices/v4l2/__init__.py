"""V4L2 camera detection, one job per module.

`model` holds the types (`V4L2Device`, `PixelFormat`, `DeviceInfo`, ...), `parse` reads v4l2-ctl's text,
`probe` runs v4l2-ctl (or reads sysfs) to find and describe nodes, `modes` picks and checks recording modes,
`render` prints `--detect`'s report and JSON. Import from the module that does the job.
"""
