"""Bounds on what configuration input may make the recorder do, shared by the YAML and legacy readers."""

# Hostile or mistaken input stays one short line and a bounded amount of work:
# - an error message shows at most this many characters of a value (and says how long it was);
MAX_SHOWN = 80
# - a camera name becomes a label on every scrape; other free strings (paths, URLs) fit PATH_MAX;
MAX_NAME_LENGTH = 128
MAX_TEXT_LENGTH = 4096
# - the file itself: a long config of many cameras is a few kB;
MAX_CONFIG_BYTES = 1 << 20
# - YAML anchors and aliases (`<<: *defaults` shared by cameras) may not expand the document beyond this
#   many values, which a real config never nears and an alias bomb (9 levels of 9: 387 million) crosses at once.
MAX_YAML_VALUES = 10_000
