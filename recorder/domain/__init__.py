"""The recorder's vocabulary, shared by every layer and depending on none.

`vocabulary` holds the closed word sets (states, reasons, triggers, actions, results) the metrics' labels
come from, `input_formats` the one table of camera input formats, `units` how sizes and durations are
written for people, `buildinfo` which build this is, and `compat` what Python 3.11 added, for 3.10.
"""
