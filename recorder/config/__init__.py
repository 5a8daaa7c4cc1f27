"""Configuration: read once, validated once, into frozen objects; nothing else reads raw dicts.

model: the frozen dataclasses, string enums and ConfigError; limits: the size bounds on input and on what an
error shows; fields: the `_Section` reader and value converters; sections: one parser per section and
`parse_config`; legacy: the original bash camera-mapping.conf read into a raw mapping, each key's line kept
to name culprits; legacy_writer: that mapping written back as YAML for --convert-config; loader: reading a
file (YAML or legacy) into a raw mapping and on into a Config.
"""

from recorder.config.loader import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    load_config,
    load_raw,
    parse_legacy,
    read_source,
    resolve_config_path,
)
from recorder.config.model import (
    PRESETS,
    BitrateMode,
    CameraConfig,
    Codec,
    Config,
    ConfigError,
    Container,
    DeviceMatch,
    EncodingConfig,
    ExporterConfig,
    RecordingConfig,
    Resolution,
    StorageConfig,
    SupervisorConfig,
    SystemConfig,
    ThresholdAction,
    TranscodingConfig,
)
from recorder.config.sections import parse_config, valid_listen_address
from recorder.domain.vocabulary import SourceKind

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "PRESETS",
    "BitrateMode",
    "CameraConfig",
    "Codec",
    "Config",
    "ConfigError",
    "Container",
    "DeviceMatch",
    "EncodingConfig",
    "ExporterConfig",
    "RecordingConfig",
    "Resolution",
    "SourceKind",
    "StorageConfig",
    "SupervisorConfig",
    "SystemConfig",
    "ThresholdAction",
    "TranscodingConfig",
    "load_config",
    "load_raw",
    "parse_config",
    "parse_legacy",
    "read_source",
    "resolve_config_path",
    "valid_listen_address",
]
