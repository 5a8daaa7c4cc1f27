"""The running daemon: the Recorder, which builds one supervisor per camera, the storage accounting and the
hot-plug monitor, starts and stops them in order and gathers the snapshot the exporter reads; around it, the
rooms it wires together: camera_wiring (a camera's supervisor and the hot-plug events that reach it), reload
(SIGHUP), health (stuck loops, systemd's watchdog) over sdnotify (systemd's notify protocol), housekeeping
(the main loop, signals, STATUS= and the status log), transcoder_slot (night transcoding's worker) and
preflight (`--validate`'s checks and the recordings folder at start). Nothing here knows of HTTP."""
