"""The CLI's config paths: --convert-config both ways, --dry-run, config errors and bad flag combinations."""

from __future__ import annotations

import dataclasses
import logging
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from recorder.app.cli import main
from recorder.config import CONFIG_ENV, Config, legacy, load_config, parse_config
from recorder.ffmpeg.presets import build_command

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
REPO = CONFIGS.parents[1]


def meaning(config: Config) -> Config:
    return dataclasses.replace(config, warnings=(), source=None)


@pytest.fixture(autouse=True)
def _keep_root_logger() -> Iterator[None]:
    """main() installs its own log handler on the root logger; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------
# --convert-config


def test_convert_legacy_prints_yaml_with_the_same_meaning(capsys: pytest.CaptureFixture[str]) -> None:
    conf = CONFIGS / "camera-mapping.conf"
    code, out, err = run(["--convert-config", str(conf)], capsys)
    assert code == 0
    converted = parse_config(yaml.safe_load(out))
    original = load_config(conf)
    # MOVFLAGS="faststart+frag_keyframe" has no effect (segments are always fragmented): left out, and so the
    # converted file starts without a warning; every camera's FFmpeg command is the same.
    assert meaning(converted) == dataclasses.replace(
        meaning(original), recording=dataclasses.replace(original.recording, movflags=None)
    )
    assert [build_command(c, converted, "ffmpeg").argv for c in converted.cameras] == [
        build_command(c, original, "ffmpeg").argv for c in original.cameras
    ]
    assert converted.warnings == ()
    assert "web_port" not in out and "movflags" not in out
    assert out.startswith("cameras:\n")  # sections in the order of config.yaml.example
    # The keys with no equivalent are named on stderr with their line, one line each, not dropped in silence.
    lines = err.splitlines()
    assert [line.split(": ")[3] for line in lines if line.startswith("camera-recorder: not converted: ")] == [
        "DISK_MONITORING", "INPUT_BUFFER_SIZE", "THREAD_COUNT", "WEB_INTERFACE", "WEB_PORT", "ALLOWED_NETWORKS",
        "CUSTOM_FFMPEG_OPTS",
    ]  # fmt: skip
    assert "camera-recorder: not converted: line 47: DISK_MONITORING: no equivalent in camera-recorder" in err
    assert "camera-recorder: converted: line 39: MOVFLAGS: 'faststart+frag_keyframe' left out" in err


def test_convert_legacy_with_explicit_target(capsys: pytest.CaptureFixture[str]) -> None:
    conf = CONFIGS / "camera-mapping.conf"
    code, out, _ = run(["--convert-config", str(conf), "--to", "yaml"], capsys)
    assert code == 0
    original = load_config(conf)  # but for MOVFLAGS, left out as it has no effect (see above)
    assert meaning(parse_config(yaml.safe_load(out))) == dataclasses.replace(
        meaning(original), recording=dataclasses.replace(original.recording, movflags=None)
    )


def test_convert_yaml_to_legacy_converts_back(capsys: pytest.CaptureFixture[str]) -> None:
    source = CONFIGS / "legacy-roundtrip.yaml"
    code, out, err = run(["--convert-config", str(source), "--to", "legacy"], capsys)
    assert code == 0
    assert err == ""  # everything in this file has a legacy form
    raw, no_equivalent = legacy.legacy_to_raw(out)
    assert no_equivalent == []
    assert meaning(parse_config(raw)) == meaning(load_config(source))


def test_convert_yaml_defaults_to_legacy(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--convert-config", str(CONFIGS / "minimal.yaml")], capsys)
    assert code == 0
    assert 'CAMERA1_DEVICE="/dev/video0"' in out.splitlines()


def test_convert_reports_what_has_no_legacy_form_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--convert-config", str(CONFIGS / "modern.yaml"), "--to", "legacy", "--force"], capsys)
    assert code == 0
    lines = err.splitlines()
    assert all(line.startswith("camera-recorder: not converted: ") for line in lines)
    for note in (
        "cameras.garage: a url source has no legacy form",
        "cameras.front.cleanup_days: has no legacy form",
        "exporter: has no legacy form",
        "recording.align_segments: has no legacy form",
    ):
        assert f"camera-recorder: not converted: {note}" in lines
    assert "rtsp://" not in out  # stdout holds only the converted file


def test_convert_an_invalid_file_fails_with_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    path = CONFIGS / "bad-framerate.yaml"
    code, out, err = run(["--convert-config", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"{path}: cameras.cam1.framerate: expected a positive integer, got 'sixty'"]


def test_convert_a_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "camera-mapping.conf"
    code, out, err = run(["--convert-config", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"{path}: cannot read config: No such file or directory"]


# ---------------------------------------------------------------------------------------------
# --dry-run


@pytest.fixture
def dry_run_config(tmp_path: Path) -> tuple[Path, Path]:
    """modern.yaml with system.ffmpeg pointing at a stand-in that leaves a mark if anything runs it."""
    marker = tmp_path / "ffmpeg-ran"
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(marker))}\nexit 1\n")
    fake.chmod(0o755)
    raw: dict[str, Any] = yaml.safe_load((CONFIGS / "modern.yaml").read_text())
    raw["system"] = {**raw.get("system", {}), "ffmpeg": str(fake)}
    raw["recording"] = {**raw.get("recording", {}), "base_directory": str(tmp_path / "rec")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path, marker


def _split_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words


def test_dry_run_prints_each_camera_command_and_starts_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, dry_run_config: tuple[Path, Path]
) -> None:
    path, marker = dry_run_config

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"--dry-run started a process: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    code, out, _ = run(["--dry-run", "-c", str(path)], capsys)
    assert code == 0
    assert not marker.exists()
    assert not (path.parent / "rec").exists()  # no folder made either

    config = load_config(path)
    lines = out.splitlines()
    assert len(lines) == 2 * len(config.cameras)
    for camera, header, shell in zip(config.cameras, lines[::2], lines[1::2], strict=True):
        disabled = "" if camera.enabled else " (disabled)"
        assert header == f"# {camera.id} ({camera.name}){disabled}"
        env, argv = _split_env(shlex.split(shell))
        node = None
        if camera.match is not None and not camera.location:
            # Found by udev at run time: the dry run says which device it would look for.
            node = argv[argv.index("-i") + 1]
            assert node.startswith("<device matching ") and camera.match.serial in node
        expected = build_command(camera, config, str(path.parent / "bin" / "ffmpeg"), device_node=node)
        assert argv == list(expected.argv)
        assert env == dict(expected.env)
    assert "# demo (Demo pattern) (disabled)" in lines
    assert "# front (Front door)" in lines


def test_dry_run_reads_the_config_named_by_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, dry_run_config: tuple[Path, Path]
) -> None:
    path, _ = dry_run_config
    monkeypatch.setenv(CONFIG_ENV, str(path))
    code, out, _ = run(["--dry-run"], capsys)
    assert code == 0
    assert out.splitlines()[0] == "# front (Front door)"


def test_flag_wins_over_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, dry_run_config: tuple[Path, Path]
) -> None:
    path, _ = dry_run_config
    monkeypatch.setenv(CONFIG_ENV, str(CONFIGS / "bad-framerate.yaml"))
    code, out, _ = run(["--dry-run", "-c", str(path)], capsys)
    assert code == 0
    assert out.splitlines()[0] == "# front (Front door)"


def test_dry_run_of_a_legacy_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--dry-run", "-c", str(CONFIGS / "camera-mapping.conf")], capsys)
    assert code == 0
    headers = [line for line in out.splitlines() if line.startswith("# ")]
    assert headers == ["# cam1 (Front door)", "# cam2 (Back yard)", "# cam3 (Workshop #3)"]
    first = shlex.split(out.splitlines()[1])
    assert first[:2] == ["LIBVA_DRIVER_NAME=iHD", "TZ=UTC0"]  # hevc_qsv
    assert first[first.index("-i") + 1] == "/dev/video-usb1-video0"


# ---------------------------------------------------------------------------------------------
# Bad configs and bad flag combinations


def test_bad_config_exits_1_with_the_exact_line(capsys: pytest.CaptureFixture[str]) -> None:
    path = CONFIGS / "bad-framerate.yaml"
    code, out, err = run(["--dry-run", "-c", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"{path}: cameras.cam1.framerate: expected a positive integer, got 'sixty'"]


def test_several_problems_each_on_its_own_stderr_line(capsys: pytest.CaptureFixture[str]) -> None:
    path = CONFIGS / "several-problems.yaml"
    code, _, err = run(["--dry-run", "-c", str(path)], capsys)
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 6
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_missing_config_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    code, _, err = run(["--dry-run", "-c", str(path)], capsys)
    assert code == 1
    assert err.splitlines() == [f"{path}: cannot read config: No such file or directory"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--json"], "camera-recorder: --json goes with --detect or --stats"),
        (["--dry-run", "--json"], "camera-recorder: --json goes with --detect or --stats"),
        (["--to", "legacy"], "camera-recorder: --to goes with --convert-config"),
        (["--dry-run", "--to", "yaml"], "camera-recorder: --to goes with --convert-config"),
    ],
)
def test_bad_flag_combinations_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [message]


@pytest.mark.parametrize(
    "argv",
    [
        ["--convert-config", "x.conf", "--to", "toml"],
        ["--convert-config", "x.conf", "--validate"],  # two actions at once
    ],
)
def test_argparse_rejections_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "camera-recorder: error:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Hostile input through --validate: one line naming the file, exit 1, no traceback

HOSTILE = (
    "alias-bomb.yaml", "recursive-alias.yaml", "duplicate-camera.yaml", "duplicate-key.yaml", "not-utf8.yaml",
    "binary.yaml", "nul-bytes.yaml", "long-name.yaml", "long-value.yaml", "long-unknown-key.yaml", "long-path.yaml",
    "bad-date.yaml", "huge-integer.yaml", "deep-nesting.yaml",
)  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE)
def test_validate_gives_one_line_for_hostile_input(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from test_config import FAILURES

    path = CONFIGS / name
    code, out, err = run(["--validate", "-c", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"{path}: {FAILURES[name]}"]


def _cli(argv: list[str], preexec: Any = None, user: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(user or []), sys.executable, "-m", "recorder", *argv],
        cwd=REPO, capture_output=True, text=True, timeout=120, preexec_fn=preexec, check=False,
    )  # fmt: skip


def test_an_alias_bomb_is_refused_within_a_small_memory_limit() -> None:
    """9 levels of 9 aliases used to print 387 million strings (3 GB, then a MemoryError traceback)."""
    limit = 1 << 30  # address space: the interpreter and its libraries, with room to spare

    def small_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    path = CONFIGS / "alias-bomb.yaml"
    result = _cli(["--validate", "-c", str(path)], preexec=small_memory)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        f"{path}: line 6: anchors and aliases expand to more than 10000 values; refused (an alias bomb?)"
    ]


def test_an_unreadable_file_is_one_line_naming_it() -> None:
    """Run as an unprivileged user (root reads everything), through the real CLI."""
    # Not under pytest's tmp_path: its folders are private to root, and the user must reach the file.
    folder = Path(tempfile.mkdtemp(prefix="camera-recorder-perm-"))
    try:
        folder.chmod(0o755)
        path = folder / "config.yaml"
        path.write_text((CONFIGS / "minimal.yaml").read_text())
        path.chmod(0o600)
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
        runnable = subprocess.run(
            [*nobody, sys.executable, "-c", "import recorder"], cwd=REPO, capture_output=True, check=False
        )
        if runnable.returncode != 0:  # e.g. an interpreter or a checkout in a folder private to root
            pytest.skip(f"{sys.executable} cannot run as nobody: {runnable.stderr.decode().strip()[:200]}")
        result = _cli(["--validate", "-c", str(path)], user=nobody)
    finally:
        shutil.rmtree(folder)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"{path}: cannot read config: Permission denied"]


# ---------------------------------------------------------------------------------------------
# Migrating from camera-mapping.conf (issue 21)

C920_BY_ID = "usb-046d_HD_Pro_Webcam_C920_8A2F5B3E-video-index0"
FAKE_V4L2_CTL = REPO / "tests" / "fake_v4l2_ctl.py"


def fake_dev(root: Path, links: dict[str, str]) -> Path:
    """A /dev with kernel nodes and the /dev/v4l/by-id links udev makes for them (as the --detect tests do)."""
    for link, node in links.items():
        (root / node).parent.mkdir(parents=True, exist_ok=True)
        (root / node).touch()
        path = root / "v4l" / "by-id" / link
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(Path("..") / ".." / node)
    return root


def test_validate_refuses_a_mistyped_legacy_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "camera-mapping.conf"
    path.write_text('CAMERA1_DEVICE="/dev/video0"\nCAMERA1_RESOLUTON="2560x1440"\n')
    code, out, err = run(["-c", str(path), "--validate"], capsys)
    assert code != 0 and "look ready" not in out
    assert f"{path}: line 2: CAMERA1_RESOLUTON: unknown key (did you mean 'CAMERA1_RESOLUTION'?)" in err


def test_convert_proposes_the_by_id_path_detect_sees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = fake_dev(tmp_path / "dev", {C920_BY_ID: "video2"})
    conf = tmp_path / "camera-mapping.conf"
    conf.write_text(
        f'CAMERA1_DEVICE="{dev}/video2"\nCAMERA1_NAME="Yard"\n'
        f'CAMERA2_DEVICE="{dev}/video6"\n'  # unplugged: no link points at it
        f'CAMERA3_DEVICE="{dev}/video-usb1-video0"\n'  # a udev rule's own stable name: left alone
        'WEB_PORT="8080"\n'
    )
    code, out, err = run(["--convert-config", str(conf)], capsys)
    assert code == 0
    cameras = yaml.safe_load(out)["cameras"]
    assert cameras["cam1"]["device"] == f"{dev}/v4l/by-id/{C920_BY_ID}"
    assert cameras["cam2"]["device"] == f"{dev}/video6"
    assert cameras["cam3"]["device"] == f"{dev}/video-usb1-video0"
    assert "web_port" not in yaml.safe_load(out)
    lines = err.splitlines()
    assert f"camera-recorder: converted: line 1: CAMERA1_DEVICE: {dev}/video2 -> {dev}/v4l/by-id/{C920_BY_ID} " in (
        line[: line.index("(")] for line in lines if "(" in line
    )
    assert any(line.startswith(f"camera-recorder: check: line 3: CAMERA2_DEVICE: {dev}/video6 kept") for line in lines)
    assert not any("CAMERA3_DEVICE" in line for line in lines)
    assert any(line.startswith("camera-recorder: not converted: line 5: WEB_PORT: ") for line in lines)

    # --detect, with the fake v4l2-ctl the detection tests use, names the same link for that node.
    from recorder.devices.v4l2.probe import detect

    replay = tmp_path / "replay"
    replay.mkdir()
    (replay / "list-devices.txt").write_text("HD Pro Webcam C920 (usb-0000:0a:00.3-3):\n\t/dev/video2\n")
    for name in ("video2.info.txt", "video2.formats.txt"):
        corpus = (REPO / "tests" / "fixtures" / "v4l2-corpus" / "formats-logitech-c920-with-all.txt").read_text()
        (replay / name).write_text(corpus.split("# ---\n", 1)[1])
    monkeypatch.setenv("FAKE_V4L2_DIR", str(replay))
    program = tmp_path / "v4l2-ctl"
    program.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_V4L2_CTL))} "$@"\n')
    program.chmod(0o755)
    (device,) = detect(str(program), dev_root=str(dev), sys_root=str(tmp_path / "sys"))
    assert device.stable_paths[0] == cameras["cam1"]["device"]


def test_converted_yaml_starts_without_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "camera-mapping.conf"
    conf.write_text(
        'CAMERA1_DEVICE="/dev/video-usb1-video0"\nWEB_PORT="8080"\nMOVFLAGS="faststart+frag_keyframe+dash"\n'
    )
    code, out, _ = run(["--convert-config", str(conf)], capsys)
    assert code == 0
    converted = tmp_path / "config.yaml"
    converted.write_text(out)
    cfg = load_config(converted)
    assert (cfg.warnings, cfg.recording.movflags) == ((), "+dash")


def test_convert_a_legacy_file_with_problems_names_its_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "camera-mapping.conf"
    conf.write_text('CAMERA1_DEVICE="/dev/video0"\nCAMERA1_FRAMERATE=sixty\nCAMERA1_FORMT=h264\n')
    code, out, err = run(["--convert-config", str(conf)], capsys)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{conf}: line 2: CAMERA1_FRAMERATE: expected a positive integer, got 'sixty'",
        f"{conf}: line 3: CAMERA1_FORMT: unknown key (did you mean 'CAMERA1_FORMAT'?)",
    ]


def test_validate_of_a_legacy_file_names_its_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "camera-mapping.conf"
    conf.write_text(f'# cameras\nCAMERA1_DEVICE="{tmp_path}/video9"\nRECORDINGS_BASE="{tmp_path}/rec"\n')
    code, _, err = run(["-c", str(conf), "--validate"], capsys)
    assert code == 1
    assert f"problem: line 2: CAMERA1_DEVICE: {tmp_path}/video9 is not present" in err.splitlines()
    assert "cameras.cam1" not in err
