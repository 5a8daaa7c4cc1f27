"""What an operator runs: the command line and its composition root, which wires the daemon to the exporter.

`cli` parses and dispatches (`cli_args`), `commands` runs the one-shot commands (--detect, --validate,
--stats, --cleanup, --convert-config, ...), `demo` the synthetic-camera default, `export_cli` and
`transcode_cli` the clip and transcoding runs with `progress_display`'s bars or lines, `logformat` the
log line formats, `migration_doc` the generated table in MIGRATION.md.
"""
