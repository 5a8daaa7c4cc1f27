"""FFmpeg as the recorder runs it: which binary, which argv, one process, its progress and its errors.

`binary` finds FFmpeg and ffprobe, `presets` builds the argv from tables of presets and the typed config,
`process` starts one FFmpeg in a process group of its own that cannot outlive the daemon, `run` watches one
run (pipes, stall, segment list, reaping) and tells its owner through `RunHooks`, `progress` parses
`-progress` blocks, and `errors` classifies stderr into restart reasons and scrubs credentials from it.
"""
