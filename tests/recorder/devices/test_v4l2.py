"""Tests for the recorder.devices.v4l2 package against real v4l2-ctl outputs (published ones and the project's own)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path

import pytest
import yaml

from recorder.devices.v4l2.model import DeviceInfo, FrameSize, StepwiseSize, V4L2Device
from recorder.devices.v4l2.modes import check_mode, recommend
from recorder.devices.v4l2.parse import parse_formats, parse_info, parse_list_devices, split_card_header
from recorder.devices.v4l2.probe import detect, resolve_v4l2_ctl, stable_paths
from recorder.devices.v4l2.render import devices_to_json, render_human
from recorder.domain.input_formats import fourccs_for, input_format_name

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / "tests" / "fixtures" / "v4l2-corpus"  # published outputs; README.md there names each source
FIXTURES = REPO / "tests" / "fixtures" / "v4l2"
FAKE_V4L2_CTL = REPO / "tests" / "fake_v4l2_ctl.py"


def recorded(path: Path) -> str:
    """Return a recorded output without its '# ' header lines and the '# ---' separator."""
    header, separator, body = path.read_text(encoding="utf-8").partition("# ---\n")
    assert separator, f"{path.name}: no '# ---' line"
    assert all(line.startswith("#") for line in header.splitlines()), f"{path.name}: header lines must start with '#'"
    return body


def corpus(name: str) -> str:
    """Return the output of one published (corpus) file."""
    return recorded(CORPUS / name)


def fixture(name: str) -> str:
    """Return the output of one of the project's fixtures."""
    return recorded(FIXTURES / name)


def source_file(kind: str, name: str) -> Path:
    """Return the path of a corpus ("corpus") or project ("fixture") file."""
    return (CORPUS if kind == "corpus" else FIXTURES) / name


# --- parse_formats ----------------------------------------------------------------------------------

MMAL = StepwiseSize(32, 2592, 2, 32, 1944, 2)
IMX708 = StepwiseSize(16, 16376, 1, 16, 16376, 1)
C920_RATES = (30.0, 24.0, 20.0, 15.0, 10.0, 7.5, 5.0)
ELP4K_RATES = (30.0, 25.0, 20.0, 15.0, 10.0, 5.0)


@dataclass(frozen=True)
class FormatsCase:
    """What one --list-formats-ext output must parse to."""

    fourccs: tuple[str, ...]
    size_counts: tuple[int, ...]
    # (fourcc, size) pairs that must be among that format's sizes, rates and all.
    spots: tuple[tuple[str, FrameSize | StepwiseSize], ...] = ()
    descriptions: tuple[str, ...] | None = None


FORMATS_CASES: dict[tuple[str, str], FormatsCase] = {
    ("corpus", "formats-bluerobotics-lowlight-h264-usb-camera-video0.txt"): FormatsCase(
        ("MJPG", "YUYV"),
        (7, 5),  # 1920x1080 and 640x480 are listed twice
        (("MJPG", FrameSize(1920, 1080, (30.0, 25.0, 15.0))), ("YUYV", FrameSize(800, 600, (15.0,)))),
        ("Motion-JPEG", "YUYV 4:2:2"),
    ),
    ("corpus", "formats-bluerobotics-lowlight-h264-usb-camera-video1.txt"): FormatsCase(
        ("H264",),
        (7,),
        (("H264", FrameSize(1920, 1080, (30.0, 25.0, 15.0))), ("H264", FrameSize(320, 240, (30.0, 25.0, 15.0)))),
        ("H.264",),
    ),
    ("corpus", "formats-elp-3d-usb-stereo-camera.txt"): FormatsCase(
        ("MJPG", "YUYV"),
        (5, 5),
        (
            ("MJPG", FrameSize(1600, 600, (120.0, 60.0, 30.0, 25.0, 20.0, 15.0, 10.0))),
            ("YUYV", FrameSize(3200, 1200, (2.0,))),
            ("YUYV", FrameSize(1280, 480, (15.0, 10.0))),
        ),
    ),
    ("corpus", "formats-emeet-smartcam-s800-video5-metadata.txt"): FormatsCase((), ()),
    ("corpus", "formats-emeet-smartcam-s800.txt"): FormatsCase(
        ("MJPG", "YUYV", "H264"),
        (8, 6, 8),
        (
            ("H264", FrameSize(3840, 2160, (30.0, 24.0))),
            ("H264", FrameSize(1920, 1080, (60.0, 30.0, 24.0))),
            ("MJPG", FrameSize(2560, 1440, (30.0, 24.0))),
        ),
        ("Motion-JPEG", "YUYV 4:2:2", "H.264"),
    ),
    ("corpus", "formats-insta360-air.txt"): FormatsCase(
        ("MJPG", "H264"),
        (3, 2),
        (("MJPG", FrameSize(3008, 1504, (30.0,))), ("H264", FrameSize(2560, 1280, (30.0, 24.0, 20.0)))),
    ),
    ("corpus", "formats-ipevo-ziggi-hd-plus.txt"): FormatsCase(
        ("MJPG", "YUYV"),
        (10, 6),
        (("MJPG", FrameSize(3264, 2448, (15.0,))), ("YUYV", FrameSize(1600, 1200, (7.0,)))),
    ),
    # The --all block before the list shows the current format ('YUYV'); it must not become a format.
    ("corpus", "formats-logitech-c920-with-all.txt"): FormatsCase(
        ("YUYV", "H264", "MJPG"),
        (19, 17, 17),
        (
            ("YUYV", FrameSize(2304, 1536, (2.0,))),
            ("YUYV", FrameSize(1280, 720, (10.0, 7.5, 5.0))),
            ("H264", FrameSize(1920, 1080, C920_RATES)),
            ("MJPG", FrameSize(1600, 896, C920_RATES)),
        ),
    ),
    ("corpus", "formats-ocam-5cro-u-odroid.txt"): FormatsCase(
        ("YUYV", "MJPG"),
        (6, 3),
        (
            ("YUYV", FrameSize(2592, 1944, (7.5, 3.75))),
            ("YUYV", FrameSize(640, 480, (120.0, 90.0, 60.0, 30.0))),
            ("MJPG", FrameSize(1280, 720, (45.0, 30.0, 15.0))),
        ),
    ),
    # 640x480 is listed first and last, each time with its interval list twice.
    ("corpus", "formats-orbbec-astra-stereo-s-u3-color.txt"): FormatsCase(
        ("MJPG", "YUYV"),
        (7, 7),
        (
            ("MJPG", FrameSize(640, 480, (60.0, 30.0, 25.0, 20.0, 15.0, 10.0, 5.0))),
            ("MJPG", FrameSize(2560, 1440, (30.0, 20.0, 15.0, 10.0, 5.0))),
            ("YUYV", FrameSize(2592, 1944, (2.0,))),
        ),
    ),
    ("corpus", "formats-rpi-camera-bcm2835-mmal-stepwise.txt"): FormatsCase(
        (
            "YU12",
            "YUYV",
            "RGB3",
            "JPEG",
            "H264",
            "MJPG",
            "YVYU",
            "VYUY",
            "UYVY",
            "NV12",
            "BGR3",
            "YV12",
            "NV21",
            "BGR4",
        ),
        (1,) * 14,
        # BGR4's size line lost its tabs in the source; it must still attach to BGR4.
        (("H264", MMAL), ("BGR4", MMAL)),
    ),
    ("corpus", "formats-rpi-camera-module-3-imx708-unicam-stepwise.txt"): FormatsCase(
        (
            *("YUYV", "UYVY", "YVYU", "VYUY", "RGBP", "RGBR", "RGBO", "RGBQ", "RGB3", "BGR3", "RGB4"),
            *("BA81", "GBRG", "GRBG", "RGGB", "pBAA", "BG10", "pGAA", "GB10", "pgAA", "BA10", "pRAA", "RG10"),
            *("pBCC", "BG12", "pGCC", "GB12", "pgCC", "BA12", "pRCC", "RG12"),
            *("pBEE", "BG14", "pGEE", "GB14", "pgEE", "GR14", "pREE", "RG14", "BYR2", "GB16", "GR16", "RG16"),
            *("GREY", "Y10P", "Y10", "Y12P", "Y12", "Y14P", "Y14", "Y16"),
        ),
        (1,) * 51,
        (("Y10", IMX708), ("YUYV", IMX708)),
    ),
    ("corpus", "formats-sony-ilce-7m4.txt"): FormatsCase(
        ("NV12", "MJPG"),
        (1, 1),
        (("NV12", FrameSize(1920, 1080, (30.0,))), ("MJPG", FrameSize(1920, 1080, (30.0,)))),
        ("Y/UV 4:2:0", "Motion-JPEG"),
    ),
    ("fixture", "info-formats-arducam-usb2-camera-video8.txt"): FormatsCase(
        ("MJPG", "YUYV"),
        (4, 2),
        (("MJPG", FrameSize(1920, 1080, (30.0,))), ("YUYV", FrameSize(640, 480, (30.0,)))),
    ),
    ("fixture", "info-formats-arducam-usb2-camera-video10-h264.txt"): FormatsCase(
        ("H264",), (4,), (("H264", FrameSize(1920, 1080, (30.0,))), ("H264", FrameSize(640, 360, (30.0,))))
    ),
    ("fixture", "info-formats-elp-4k-usb-camera-video8.txt"): FormatsCase(
        ("MJPG", "YUYV"),
        (11, 11),
        (
            ("MJPG", FrameSize(3840, 2160, ELP4K_RATES)),
            ("YUYV", FrameSize(3840, 2160, (1.0,))),
            ("YUYV", FrameSize(800, 600, (20.0, 15.0, 10.0, 5.0))),
        ),
    ),
    ("fixture", "formats-kodak-pixpro-4k.txt"): FormatsCase(
        ("MJPG",),
        (7,),
        (("MJPG", FrameSize(2880, 2880, (5.0,))), ("MJPG", FrameSize(1280, 720, (30.0, 15.0, 5.0)))),
        ("Motion-JPEG",),
    ),
    ("fixture", "formats-rp2040-uvc-stepwise-interval.txt"): FormatsCase(
        ("YUYV",), (1,), (("YUYV", FrameSize(320, 240, (25.0, 1.0), fps_range=(1.0, 25.0))),)
    ),
    ("fixture", "formats-usb-pc-camera-stepwise-interval.txt"): FormatsCase(
        ("MJPG",), (3,), (("MJPG", FrameSize(640, 480, (30.0,), fps_range=(30.0, 30.0))),)
    ),
}


def test_every_corpus_output_has_expectations() -> None:
    assert CORPUS.is_dir(), f"corpus fixtures missing at {CORPUS}"
    names = {p.name for pattern in ("formats-*.txt", "devices-*.txt", "all-*.txt") for p in CORPUS.glob(pattern)}
    covered = {name for kind, name in (*FORMATS_CASES, *DEVICES_CASES, *INFO_CASES) if kind == "corpus"}
    assert names == covered


def test_every_fixture_is_used_and_sourced() -> None:
    files = {p.name for p in FIXTURES.glob("*.txt")}
    covered = {name for kind, name in (*FORMATS_CASES, *DEVICES_CASES, *INFO_CASES) if kind == "fixture"}
    assert files == covered
    for name in files:
        assert (FIXTURES / name).read_text(encoding="utf-8").startswith("# source: "), name


@pytest.mark.parametrize(("kind", "name"), sorted(FORMATS_CASES), ids=str)
def test_parse_formats(kind: str, name: str) -> None:
    case = FORMATS_CASES[(kind, name)]
    formats = parse_formats(recorded(source_file(kind, name)))
    assert tuple(fmt.fourcc for fmt in formats) == case.fourccs
    assert tuple(len(fmt.sizes) for fmt in formats) == case.size_counts
    by_fourcc = {fmt.fourcc: fmt for fmt in formats}
    for fourcc, size in case.spots:
        assert size in by_fourcc[fourcc].sizes, (fourcc, size)
    if case.descriptions is not None:
        assert tuple(fmt.description for fmt in formats) == case.descriptions


@pytest.mark.parametrize(("kind", "name"), sorted(FORMATS_CASES), ids=str)
def test_parse_formats_never_repeats_a_size_or_rate(kind: str, name: str) -> None:
    for fmt in parse_formats(recorded(source_file(kind, name))):
        assert len(set(fmt.sizes)) == len(fmt.sizes)
        keys = [(s.width, s.height) if isinstance(s, FrameSize) else s for s in fmt.sizes]
        assert len(set(keys)) == len(keys)
        for size in fmt.sizes:
            assert list(size.fps) == sorted(set(size.fps), reverse=True)


def test_parse_formats_flags_and_nested_parentheses() -> None:
    imx708 = {
        fmt.fourcc: fmt for fmt in parse_formats(corpus("formats-rpi-camera-module-3-imx708-unicam-stepwise.txt"))
    }
    assert imx708["Y10P"].description == "10-bit Greyscale (MIPI Packed)"
    assert imx708["Y10"].description == "10-bit Greyscale"
    assert "Y10 " not in imx708
    emeet = parse_formats(corpus("formats-emeet-smartcam-s800.txt"))
    assert [fmt.flags for fmt in emeet] == [("compressed",), (), ("compressed",)]
    mmal = {fmt.fourcc: fmt for fmt in parse_formats(corpus("formats-rpi-camera-bcm2835-mmal-stepwise.txt"))}
    assert (mmal["JPEG"].description, mmal["JPEG"].flags) == ("JFIF JPEG", ("compressed",))
    assert (mmal["YU12"].description, mmal["YU12"].flags) == ("Planar YUV 4:2:0", ())


def test_parse_formats_continuous_sizes_and_output_types() -> None:
    text = (
        "ioctl: VIDIOC_ENUM_FMT\n\tType: Video Capture\n\n\t[0]: 'NV12' (Y/CbCr 4:2:0)\n"
        "\t\tSize: Continuous 48x48 - 4096x2304\n\t[1]: 'YUYV' (YUYV 4:2:2)\n\t\tSize: Continuous\n"
        "ioctl: VIDIOC_ENUM_FMT\n\tType: Video Output\n\n\t[0]: 'H264' (H.264, compressed)\n"
        "\t\tSize: Discrete 1920x1080\n"
    )
    formats = parse_formats(text)
    assert [fmt.fourcc for fmt in formats] == ["NV12", "YUYV"]
    assert formats[0].sizes == (StepwiseSize(48, 4096, 1, 48, 2304, 1),)
    assert formats[1].sizes == ()


# --- parse_list_devices -------------------------------------------------------------------------------

DEVICES_CASES: dict[tuple[str, str], list[tuple[str, list[str]]]] = {
    ("corpus", "devices-bluerobotics-mmal-and-h264-usb-camera.txt"): [
        ("mmal service 16.1 (platform:bcm2835-v4l2)", ["/dev/video2"]),
        ("H264 USB Camera (usb-3f980000.usb-1.2)", ["/dev/video0", "/dev/video1"]),
    ],
    ("corpus", "devices-insta360-air-rpi.txt"): [
        ("Insta360 Air: Video Control (usb-3f980000.usb-1.1.2)", ["/dev/video0"]),
    ],
    ("corpus", "devices-ipevo-sony-emeet.txt"): [
        ("IPEVO Ziggi-HD Plus (usb-0000:00:14.0-10)", ["/dev/video0", "/dev/video1", "/dev/media0"]),
        ("ILCE-7M4 (usb-0000:00:14.0-3)", ["/dev/video2", "/dev/video3", "/dev/media1"]),
        ("EMEET SmartCam S800: EMEET Smar (usb-0000:00:14.0-5)", ["/dev/video4", "/dev/video5", "/dev/media2"]),
    ],
    # The trailing "Failed to open /dev/video0: ..." line is an error, not a node or a card.
    ("corpus", "devices-odroid-ocam-missing-error.txt"): [
        ("s5p-mfc-dec (platform:11000000.codec)", ["/dev/video10", "/dev/video11"]),
        ("s5p-jpeg encoder (platform:11f50000.jpeg)", ["/dev/video30", "/dev/video31"]),
        ("s5p-jpeg encoder (platform:11f60000.jpeg)", ["/dev/video32", "/dev/video33"]),
        ("exynos-gsc gscaler (platform:13e00000.video-scaler)", ["/dev/video20"]),
        ("exynos-gsc gscaler (platform:13e10000.video-scaler)", ["/dev/video21"]),
    ],
    ("corpus", "devices-odroid-ocam-present.txt"): [
        ("s5p-mfc-dec (platform:11000000.codec)", ["/dev/video10", "/dev/video11"]),
        ("s5p-jpeg encoder (platform:11f50000.jpeg)", ["/dev/video30", "/dev/video31"]),
        ("s5p-jpeg encoder (platform:11f60000.jpeg)", ["/dev/video32", "/dev/video33"]),
        ("exynos-gsc gscaler (platform:13e00000.video-scaler)", ["/dev/video20"]),
        ("exynos-gsc gscaler (platform:13e10000.video-scaler)", ["/dev/video21"]),
        ("oCam-5CRO-U (usb-xhci-hcd.3.auto-1.1)", ["/dev/video0"]),
    ],
    ("corpus", "devices-rpi4-bcm2835-codec-isp-unicam.txt"): [
        (
            "bcm2835-codec-decode (platform:bcm2835-codec)",
            ["/dev/video10", "/dev/video11", "/dev/video12", "/dev/video18", "/dev/video31", "/dev/media0"],
        ),
        (
            "bcm2835-isp (platform:bcm2835-isp)",
            [*(f"/dev/video{n}" for n in (13, 14, 15, 16, 20, 21, 22, 23)), "/dev/media1", "/dev/media2"],
        ),
        ("unicam (platform:fe801000.csi)", ["/dev/video0", "/dev/video1", "/dev/media3"]),
    ],
    ("corpus", "devices-rpi5-pispbe-rpivid-elp-stereo.txt"): [
        (
            "pispbe (platform:1000880000.pisp_be)",
            [*(f"/dev/video{n}" for n in range(20, 38)), "/dev/media1", "/dev/media2"],
        ),
        ("rpivid (platform:rpivid)", ["/dev/video19", "/dev/media0"]),
        ("3D USB Camera: 3D USB Camera (usb-xhci-hcd.0-1.1)", ["/dev/video0", "/dev/video1", "/dev/media3"]),
    ],
    ("corpus", "devices-video-capture-4-5-v4l2loopback.txt"): [
        ("fakecam (platform:v4l2loopback-000)", ["/dev/video20"]),
        ("Video Capture 4 (usb-0000:00:14.0-7.2.1)", ["/dev/video2", "/dev/video3", "/dev/video4", "/dev/video5"]),
        ("Video Capture 5 (usb-0000:00:14.0-8)", ["/dev/video0", "/dev/video1"]),
    ],
    ("fixture", "devices-arducam-usb2-camera.txt"): [
        (
            "USB 2.0 Camera: USB Camera (usb-xhci-hcd.0-1)",
            ["/dev/video8", "/dev/video9", "/dev/video10", "/dev/video11", "/dev/media4"],
        ),
    ],
    ("fixture", "devices-elp-4k-usb-camera.txt"): [
        ("HD USB CAMERA: HD USB CAMERA (usb-xhci-hcd.0-1)", ["/dev/video8", "/dev/video9", "/dev/media4"]),
    ],
    # --verbose appends "VIDIOC_QUERYCAP: ok", which is neither a card nor a node.
    ("fixture", "devices-logitech-brio.txt"): [
        ("Logitech BRIO (usb-0000:00:14.0-3.1)", ["/dev/video0", "/dev/video1", "/dev/media0"]),
    ],
    ("fixture", "devices-usb-pc-camera-padded-card.txt"): [
        ("USB PC Camera              (usb-0000:00:1d.7-5.2)", ["/dev/video0"]),
    ],
}


@pytest.mark.parametrize(("kind", "name"), sorted(DEVICES_CASES), ids=str)
def test_parse_list_devices(kind: str, name: str) -> None:
    assert parse_list_devices(recorded(source_file(kind, name))) == DEVICES_CASES[(kind, name)]


@pytest.mark.parametrize(
    ("header", "card", "bus"),
    [
        (
            "EMEET SmartCam S800: EMEET Smar (usb-0000:00:14.0-5)",
            "EMEET SmartCam S800: EMEET Smar",
            "usb-0000:00:14.0-5",
        ),
        ("USB PC Camera              (usb-0000:00:1d.7-5.2)", "USB PC Camera", "usb-0000:00:1d.7-5.2"),
        ("pispbe (platform:1000880000.pisp_be)", "pispbe", "platform:1000880000.pisp_be"),
        ("no bus info here", "no bus info here", ""),
    ],
)
def test_split_card_header(header: str, card: str, bus: str) -> None:
    assert split_card_header(header) == (card, bus)


# --- parse_info ----------------------------------------------------------------------------------------

INFO_CASES: dict[tuple[str, str], dict[str, object]] = {
    ("corpus", "all-emeet-smartcam-s800-video4.txt"): {
        "driver": "uvcvideo",
        "card": "EMEET SmartCam S800: EMEET Smar",
        "bus_info": "usb-0000:00:14.0-5",
        "capture": True,
        "metadata": False,
    },
    # Capabilities list Video Capture too, but this node's Device Caps are Metadata Capture only.
    ("corpus", "all-emeet-smartcam-s800-video5-metadata.txt"): {
        "driver": "uvcvideo",
        "card": "EMEET SmartCam S800: EMEET Smar",
        "bus_info": "usb-0000:00:14.0-5",
        "capture": False,
        "metadata": True,
    },
    # 2012 kernel: no Device Caps line, so the device Capabilities decide; the card's trailing space goes.
    ("corpus", "all-md80-clone-general-uvc-very-old.txt"): {
        "driver": "uvcvideo",
        "card": "GENERAL - UVC",
        "bus_info": "usb-0000:00:1d.7-7",
        "capture": True,
        "metadata": False,
    },
    ("corpus", "all-ocam-5cro-u-odroid-old-style.txt"): {
        "driver": "uvcvideo",
        "card": "oCam-5CRO-U",
        "bus_info": "usb-xhci-hcd.3.auto-1.2",
        "capture": True,
        "metadata": False,
    },
    ("corpus", "all-rpi-camera-module-3-unicam-video0.txt"): {
        "driver": "unicam",
        "card": "unicam",
        "bus_info": "platform:fe801000.csi",
        "capture": True,
        "metadata": False,
    },
    ("corpus", "all-rpi-camera-module-3-unicam-video1-metadata.txt"): {
        "driver": "unicam",
        "card": "unicam",
        "bus_info": "platform:fe801000.csi",
        "capture": False,
        "metadata": True,
    },
    ("fixture", "all-logitech-brio.txt"): {
        "driver": "uvcvideo",
        "card": "Logitech BRIO",
        "bus_info": "usb-0000:00:14.0-3.1",
        "capture": True,
        "metadata": False,
    },
    ("fixture", "info-formats-arducam-usb2-camera-video8.txt"): {
        "driver": "uvcvideo",
        "card": "USB 2.0 Camera: USB Camera",
        "bus_info": "usb-xhci-hcd.0-1",
        "capture": True,
        "metadata": False,
    },
}
# Files parsed both ways are listed once in FORMATS_CASES for the coverage checks.
_INFO_ALSO = {
    ("corpus", "formats-logitech-c920-with-all.txt"): {
        "driver": "uvcvideo",
        "card": "HD Pro Webcam C920",
        "bus_info": "usb-0000:0a:00.3-3",
        "capture": True,
        "metadata": False,
    },
    ("fixture", "info-formats-elp-4k-usb-camera-video8.txt"): {
        "driver": "uvcvideo",
        "card": "HD USB CAMERA: HD USB CAMERA",
        "bus_info": "usb-xhci-hcd.0-1",
        "capture": True,
        "metadata": False,
    },
}


@pytest.mark.parametrize(("kind", "name"), sorted({**INFO_CASES, **_INFO_ALSO}), ids=str)
def test_parse_info(kind: str, name: str) -> None:
    expected = {**INFO_CASES, **_INFO_ALSO}[(kind, name)]
    info = parse_info(recorded(source_file(kind, name)))
    assert {key: getattr(info, key) for key in expected} == expected


def test_parse_info_caps_come_from_device_caps() -> None:
    info = parse_info(corpus("all-rpi-camera-module-3-unicam-video1-metadata.txt"))
    assert info.caps == ("Metadata Capture", "Read/Write", "Streaming", "Extended Pix Format")
    old = parse_info(corpus("all-md80-clone-general-uvc-very-old.txt"))
    assert old.caps == ("Video Capture", "Streaming")


def test_parse_info_returns_a_whole_device_info() -> None:
    # Device Caps (not the device-wide Capabilities, which add Metadata Capture) and the first Driver Info block.
    assert parse_info(corpus("all-rpi-camera-module-3-unicam-video0.txt")) == DeviceInfo(
        driver="unicam",
        card="unicam",
        bus_info="platform:fe801000.csi",
        caps=("Video Capture", "Read/Write", "Streaming", "Extended Pix Format"),
    )
    # --all with a streaming parameter "Capabilities : timeperframe" further down: not a second caps list.
    assert parse_info(fixture("all-logitech-brio.txt")) == DeviceInfo(
        driver="uvcvideo",
        card="Logitech BRIO",
        bus_info="usb-0000:00:14.0-3.1",
        caps=("Video Capture", "Streaming", "Extended Pix Format"),
    )


def test_parse_info_first_block_wins_over_media_driver_info() -> None:
    text = (
        "Driver Info:\n\tDriver name      : uvcvideo\n\tBus info         : usb-1\n"
        "\tDevice Caps      : 0x04200001\n\t\tVideo Capture\n\t\tStreaming\n"
        "Media Driver Info:\n\tDriver name      : media-other\n\tBus info         : usb-2\n"
    )
    assert parse_info(text) == DeviceInfo("uvcvideo", "", "usb-1", ("Video Capture", "Streaming"))


@pytest.mark.parametrize("text", ["", "Cannot open device /dev/video9, exiting.\n"], ids=["empty", "error"])
def test_parse_info_of_no_info_is_an_empty_device_info(text: str) -> None:
    info = parse_info(text)
    assert info == DeviceInfo()
    assert (info.capture, info.metadata) == (False, False)


def test_device_info_is_frozen_and_derives_its_roles_from_caps() -> None:
    info = DeviceInfo(caps=("Video Capture Multiplanar", "Streaming"))
    assert (info.capture, info.metadata) == (True, False)
    assert (DeviceInfo(caps=("Metadata Capture",)).capture, DeviceInfo(caps=("Metadata Capture",)).metadata) == (
        False,
        True,
    )
    with pytest.raises(FrozenInstanceError):
        info.driver = "changed"  # type: ignore[misc]


# --- stable paths and configuration --------------------------------------------------------------------


def make_dev_root(root: Path, links: dict[str, str]) -> Path:
    """Create root/v4l/<kind>/<name> -> ../../<node> symlinks (made-up udev names) and the nodes."""
    root.mkdir(parents=True, exist_ok=True)
    for link, node in links.items():
        (root / node).touch()
        path = root / "v4l" / link
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(Path("..") / ".." / node)
    return root


def test_stable_paths_finds_by_id_then_by_path(tmp_path: Path) -> None:
    dev = make_dev_root(
        tmp_path,
        {
            "by-path/pci-0000:00:14.0-usb-0:5:1.0-video-index0": "video4",
            "by-id/usb-EMEET_SmartCam_S800-video-index0": "video4",
            "by-id/usb-EMEET_SmartCam_S800-video-index1": "video5",
        },
    )
    (dev / "v4l" / "by-id" / "not-a-link").touch()
    assert stable_paths("/dev/video4", str(dev)) == (
        str(dev / "v4l/by-id/usb-EMEET_SmartCam_S800-video-index0"),
        str(dev / "v4l/by-path/pci-0000:00:14.0-usb-0:5:1.0-video-index0"),
    )
    assert stable_paths("/dev/video5", str(dev)) == (str(dev / "v4l/by-id/usb-EMEET_SmartCam_S800-video-index1"),)
    assert stable_paths("/dev/video9", str(dev)) == ()
    assert stable_paths("/dev/video0", str(tmp_path / "no-such-dev")) == ()


def test_resolve_v4l2_ctl_prefers_env_then_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAMERA_RECORDER_V4L2_CTL", raising=False)
    assert resolve_v4l2_ctl(None) == "v4l2-ctl"
    assert resolve_v4l2_ctl("  ") == "v4l2-ctl"
    assert resolve_v4l2_ctl("/opt/v4l/bin/v4l2-ctl") == "/opt/v4l/bin/v4l2-ctl"
    monkeypatch.setenv("CAMERA_RECORDER_V4L2_CTL", "/usr/local/bin/v4l2-ctl")
    assert resolve_v4l2_ctl("/opt/v4l/bin/v4l2-ctl") == "/usr/local/bin/v4l2-ctl"
    monkeypatch.setenv("CAMERA_RECORDER_V4L2_CTL", "")
    assert resolve_v4l2_ctl("/opt/v4l/bin/v4l2-ctl") == "/opt/v4l/bin/v4l2-ctl"


# --- detect() end to end with the fake v4l2-ctl ---------------------------------------------------------


def fake_program(tmp_path: Path, outputs: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Fill FAKE_V4L2_DIR with outputs and return a v4l2-ctl that runs the fake with this interpreter."""
    replay = tmp_path / "fake-v4l2"
    replay.mkdir()
    for name, text in outputs.items():
        (replay / name).write_text(text, encoding="utf-8")
    monkeypatch.setenv("FAKE_V4L2_DIR", str(replay))
    program = tmp_path / "bin" / "v4l2-ctl"
    program.parent.mkdir()
    program.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_V4L2_CTL))} "$@"\n')
    program.chmod(0o755)
    return str(program)


def run_fake(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the fake v4l2-ctl directly."""
    return subprocess.run([program, *args], capture_output=True, text=True, check=False, timeout=10)


EMEET_OUTPUTS = {
    "list-devices.txt": "devices-ipevo-sony-emeet.txt",
    "video4.info.txt": "all-emeet-smartcam-s800-video4.txt",
    "video4.formats.txt": "formats-emeet-smartcam-s800.txt",
    "video5.info.txt": "all-emeet-smartcam-s800-video5-metadata.txt",
    "video5.formats.txt": "formats-emeet-smartcam-s800-video5-metadata.txt",
}


@pytest.fixture
def emeet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[V4L2Device], Path]:
    """Detect the IPEVO + Sony + EMEET machine; only the EMEET nodes have recorded --all outputs."""
    program = fake_program(tmp_path, {k: corpus(v) for k, v in EMEET_OUTPUTS.items()}, monkeypatch)
    dev = make_dev_root(
        tmp_path / "dev",
        {
            "by-id/usb-EMEET_SmartCam_S800-video-index0": "video4",
            "by-id/usb-EMEET_SmartCam_S800-video-index1": "video5",
            "by-path/pci-0000:00:14.0-usb-0:5:1.0-video-index0": "video4",
        },
    )
    return detect(program, dev_root=str(dev), sys_root=str(tmp_path / "sys")), dev


def test_fake_v4l2_ctl_answers_like_v4l2_ctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = fake_program(tmp_path, {k: corpus(v) for k, v in EMEET_OUTPUTS.items()}, monkeypatch)
    assert run_fake(program, "--list-devices").stdout == corpus("devices-ipevo-sony-emeet.txt")
    assert run_fake(program, "--device=/dev/video4", "--list-formats-ext").stdout == corpus(
        "formats-emeet-smartcam-s800.txt"
    )
    assert run_fake(program, "-d", "4", "--all").stdout == corpus("all-emeet-smartcam-s800-video4.txt")
    assert run_fake(program, "-d", "/dev/video5", "--info").stdout == corpus(
        "all-emeet-smartcam-s800-video5-metadata.txt"
    )
    missing = run_fake(program, "-d", "/dev/video9", "--info")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.strip() == "Cannot open device /dev/video9, exiting."
    assert run_fake(program, "-d", "/dev/video4", "--list-ctrls").returncode == 1


def test_detect_describes_every_node_and_survives_failing_ones(emeet: tuple[list[V4L2Device], Path]) -> None:
    devices, dev = emeet
    assert [d.path for d in devices] == [f"/dev/video{n}" for n in range(6)]
    for device, card, bus in zip(
        devices[:4],
        ["IPEVO Ziggi-HD Plus"] * 2 + ["ILCE-7M4"] * 2,
        ["usb-0000:00:14.0-10"] * 2 + ["usb-0000:00:14.0-3"] * 2,
        strict=True,
    ):
        assert (device.card, device.bus_info, device.capture, device.formats) == (card, bus, False, ())
        assert device.error == f"v4l2-ctl -d {device.path} --info: Cannot open device {device.path}, exiting. (exit 1)"
    capture, metadata = devices[4], devices[5]
    assert (capture.driver, capture.capture, capture.metadata, capture.error) == ("uvcvideo", True, False, None)
    assert [fmt.fourcc for fmt in capture.formats] == ["MJPG", "YUYV", "H264"]
    assert capture.stable_paths == (
        str(dev / "v4l/by-id/usb-EMEET_SmartCam_S800-video-index0"),
        str(dev / "v4l/by-path/pci-0000:00:14.0-usb-0:5:1.0-video-index0"),
    )
    assert (metadata.capture, metadata.metadata, metadata.formats, metadata.error) == (False, True, (), None)
    assert metadata.stable_paths == (str(dev / "v4l/by-id/usb-EMEET_SmartCam_S800-video-index1"),)


DEVICE_KEYS = {"path", "card", "driver", "bus_info", "capture", "metadata", "stable_paths", "formats", "error"}


def test_devices_to_json_shape(emeet: tuple[list[V4L2Device], Path]) -> None:
    devices, dev = emeet
    doc = devices_to_json(devices)
    assert json.loads(json.dumps(doc)) == doc
    assert list(doc) == ["devices"]
    assert all(set(device) == DEVICE_KEYS for device in doc["devices"])
    emeet_node = doc["devices"][4]
    assert emeet_node["path"] == "/dev/video4"
    assert emeet_node["card"] == "EMEET SmartCam S800: EMEET Smar"
    assert emeet_node["capture"] is True
    assert emeet_node["stable_paths"][0] == str(dev / "v4l/by-id/usb-EMEET_SmartCam_S800-video-index0")
    h264 = emeet_node["formats"][2]
    assert set(h264) == {"fourcc", "description", "flags", "sizes"}
    assert (h264["fourcc"], h264["description"], h264["flags"]) == ("H264", "H.264", ["compressed"])
    assert h264["sizes"][0] == {"width": 3840, "height": 2160, "fps": [30.0, 24.0]}
    assert doc["devices"][5]["formats"] == [] and doc["devices"][5]["metadata"] is True
    assert doc["devices"][0]["error"].startswith("v4l2-ctl -d /dev/video0 --info: ")


def test_devices_to_json_stepwise_and_interval_ranges() -> None:
    mmal = camera(corpus("formats-rpi-camera-bcm2835-mmal-stepwise.txt"), card="mmal service 16.1")
    size = devices_to_json([mmal])["devices"][0]["formats"][4]["sizes"][0]
    assert size == {
        "stepwise": {
            "min_width": 32,
            "max_width": 2592,
            "step_width": 2,
            "min_height": 32,
            "max_height": 1944,
            "step_height": 2,
        },
        "fps": [],
    }
    pico = camera(fixture("formats-rp2040-uvc-stepwise-interval.txt"), card="Pico")
    assert devices_to_json([pico])["devices"][0]["formats"][0]["sizes"] == [
        {"width": 320, "height": 240, "fps": [25.0, 1.0], "fps_range": {"min": 1.0, "max": 25.0}}
    ]


def yaml_part(report: str) -> dict[str, object]:
    """Return the ready-to-paste YAML at the end of a human report, parsed."""
    return yaml.safe_load(report[report.index("\ncameras:") :])


def test_render_human_groups_nodes_by_camera(emeet: tuple[list[V4L2Device], Path]) -> None:
    devices, dev = emeet
    report = render_human(devices)
    blocks = report.split("\n\n")
    assert blocks[0].startswith("Camera 1: IPEVO Ziggi-HD Plus\n  bus: usb-0000:00:14.0-10\n  node: /dev/video0\n")
    assert "error: v4l2-ctl -d /dev/video1 --info: Cannot open device /dev/video1, exiting. (exit 1)" in blocks[0]
    assert blocks[1].startswith("Camera 2: ILCE-7M4\n")
    emeet_block = blocks[2]
    assert emeet_block.startswith(
        "Camera 3: EMEET SmartCam S800: EMEET Smar\n  bus: usb-0000:00:14.0-5, driver: uvcvideo\n"
        "  capture node: /dev/video4\n"
        f"    stable: {dev}/v4l/by-id/usb-EMEET_SmartCam_S800-video-index0\n"
    )
    assert "    H264 (H.264):\n      3840x2160, 2560x1440 @ 30/24 fps\n" in emeet_block
    assert "      1920x1080, 1280x960, 1280x720, 1024x576, 640x480, 640x360 @ 60/30/24 fps" in emeet_block
    assert emeet_block.rstrip().endswith(
        f"  metadata node: /dev/video5\n    stable: {dev}/v4l/by-id/usb-EMEET_SmartCam_S800-video-index1"
    )
    assert yaml_part(report) == {
        "cameras": {
            "cam1": {
                "device": f"{dev}/v4l/by-id/usb-EMEET_SmartCam_S800-video-index0",
                "name": "EMEET SmartCam S800: EMEET Smar",
                "input_format": "h264",
                "resolution": "3840x2160",
                "framerate": 30,
            }
        }
    }


def test_render_human_lists_non_cameras_apart() -> None:
    decoder = V4L2Device(
        "/dev/video19", "rpivid", "rpivid", "platform:rpivid", False, (), (), caps=("Video Memory-to-Memory",)
    )
    report = render_human([decoder])
    assert "Other V4L2 devices (no video capture node):\n  rpivid [platform:rpivid]: /dev/video19\n" in report
    assert report.endswith("cameras: {}  # no camera offers a recordable video format\n")
    assert render_human([]) == "No V4L2 video devices found.\n"


ARDUCAM_OUTPUTS = {
    "list-devices.txt": "devices-arducam-usb2-camera.txt",
    "video8.info.txt": "info-formats-arducam-usb2-camera-video8.txt",
    "video8.formats.txt": "info-formats-arducam-usb2-camera-video8.txt",
    "video10.info.txt": "info-formats-arducam-usb2-camera-video10-h264.txt",
    "video10.formats.txt": "info-formats-arducam-usb2-camera-video10-h264.txt",
}


def test_detect_recommends_the_h264_node_of_a_camera(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = fake_program(tmp_path, {k: fixture(v) for k, v in ARDUCAM_OUTPUTS.items()}, monkeypatch)
    dev = make_dev_root(
        tmp_path / "dev",
        {
            "by-id/usb-USB_2.0_Camera_SN0001-video-index0": "video8",
            "by-id/usb-USB_2.0_Camera_SN0001-video-index2": "video10",
        },
    )
    devices = detect(program, dev_root=str(dev), sys_root=str(tmp_path / "sys"))
    assert [(d.path, d.capture, d.error is None) for d in devices] == [
        ("/dev/video8", True, True),
        ("/dev/video9", False, False),  # no output was published for the metadata nodes
        ("/dev/video10", True, True),
        ("/dev/video11", False, False),
    ]
    assert recommend(devices[0]) == {
        "device": f"{dev}/v4l/by-id/usb-USB_2.0_Camera_SN0001-video-index0",
        "name": "USB 2.0 Camera: USB Camera",
        "input_format": "mjpeg",
        "resolution": "1920x1080",
        "framerate": 30,
    }
    report = render_human(devices)
    assert report.count("Camera ") == 1
    assert yaml_part(report)["cameras"] == {
        "cam1": {
            "device": f"{dev}/v4l/by-id/usb-USB_2.0_Camera_SN0001-video-index2",
            "name": "USB 2.0 Camera: USB Camera",
            "input_format": "h264",
            "resolution": "1920x1080",
            "framerate": 30,
        }
    }


def test_detect_falls_back_to_sysfs_without_v4l2_ctl(tmp_path: Path) -> None:
    sys_root, dev = tmp_path / "sys", tmp_path / "dev"
    usb = sys_root / "devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0"
    (sys_root / "bus/usb/drivers/uvcvideo").mkdir(parents=True)
    usb.mkdir(parents=True)
    (usb / "driver").symlink_to(sys_root / "bus/usb/drivers/uvcvideo")
    for index, name in enumerate(("video0", "video1")):
        node = sys_root / "class/video4linux" / name
        node.mkdir(parents=True)
        (node / "name").write_text("HD Pro Webcam C920\n")
        (node / "index").write_text(f"{index}\n")
        (node / "device").symlink_to(usb)
        dev.mkdir(exist_ok=True)
        (dev / name).touch()
    devices = detect(str(tmp_path / "missing" / "v4l2-ctl"), dev_root=str(dev), sys_root=str(sys_root))
    assert [(d.path, d.card, d.driver, d.bus_info, d.capture) for d in devices] == [
        (str(dev / "video0"), "HD Pro Webcam C920", "uvcvideo", "1-3:1.0", True),
        (str(dev / "video1"), "HD Pro Webcam C920", "uvcvideo", "1-3:1.0", False),
    ]
    assert all("could not run" in (d.error or "") and "v4l-utils" in (d.error or "") for d in devices)
    # No sysfs at all: the nodes under dev_root are still listed.
    bare = detect(str(tmp_path / "missing" / "v4l2-ctl"), dev_root=str(dev), sys_root=str(tmp_path / "nosys"))
    assert [d.path for d in bare] == [str(dev / "video0"), str(dev / "video1")]


def test_detect_reports_timeouts_per_node(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        if "--list-devices" in argv:
            return subprocess.CompletedProcess(argv, 0, fixture("devices-elp-4k-usb-camera.txt"), "")
        raise subprocess.TimeoutExpired(argv, timeout)

    devices = detect("v4l2-ctl", dev_root=str(tmp_path), sys_root=str(tmp_path), timeout=2.5, run=run)
    assert [(d.path, d.card, d.bus_info) for d in devices] == [
        ("/dev/video8", "HD USB CAMERA: HD USB CAMERA", "usb-xhci-hcd.0-1"),
        ("/dev/video9", "HD USB CAMERA: HD USB CAMERA", "usb-xhci-hcd.0-1"),
    ]
    assert [d.error for d in devices] == [
        "v4l2-ctl -d /dev/video8 --info timed out after 2.5s",
        "v4l2-ctl -d /dev/video9 --info timed out after 2.5s",
    ]
    assert calls[1:] == [["v4l2-ctl", "-d", "/dev/video8", "--info"], ["v4l2-ctl", "-d", "/dev/video9", "--info"]]


def test_detect_keeps_info_when_formats_fail(tmp_path: Path) -> None:
    def run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        if "--list-devices" in argv:
            return subprocess.CompletedProcess(argv, 0, fixture("devices-logitech-brio.txt"), "")
        if "--info" in argv and argv[2] == "/dev/video0":
            return subprocess.CompletedProcess(argv, 0, fixture("all-logitech-brio.txt"), "")
        return subprocess.CompletedProcess(argv, 255, "", "VIDIOC_ENUM_FMT: Input/output error\n")

    brio = detect("v4l2-ctl", dev_root=str(tmp_path), sys_root=str(tmp_path), run=run)[0]
    assert (brio.card, brio.driver, brio.capture, brio.formats) == ("Logitech BRIO", "uvcvideo", True, ())
    assert brio.error == "v4l2-ctl -d /dev/video0 --list-formats-ext: VIDIOC_ENUM_FMT: Input/output error (exit 255)"


def test_detect_lists_devices_timeout_falls_back_to_sysfs(tmp_path: Path) -> None:
    (tmp_path / "video3").touch()

    def run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, timeout)

    devices = detect("v4l2-ctl", dev_root=str(tmp_path), sys_root=str(tmp_path / "sys"), run=run)
    assert [(d.path, d.error) for d in devices] == [
        (str(tmp_path / "video3"), "v4l2-ctl --list-devices timed out after 5s")
    ]


# --- recommend -----------------------------------------------------------------------------------------


def camera(formats_text: str, card: str = "cam", path: str = "/dev/video0", links: tuple[str, ...] = ()) -> V4L2Device:
    """Return a capture node offering the formats in formats_text."""
    return V4L2Device(path, card, "uvcvideo", "usb-1", True, links, parse_formats(formats_text))


RECOMMEND_CASES: dict[str, tuple[tuple[str, str], tuple[str, str, int]]] = {
    "emeet h264 4k": (("corpus", "formats-emeet-smartcam-s800.txt"), ("h264", "3840x2160", 30)),
    "c920 h264 over larger yuyv": (("corpus", "formats-logitech-c920-with-all.txt"), ("h264", "1920x1080", 30)),
    "insta360 h264 over larger mjpeg": (("corpus", "formats-insta360-air.txt"), ("h264", "2560x1280", 30)),
    "ocam mjpeg over larger yuyv": (("corpus", "formats-ocam-5cro-u-odroid.txt"), ("mjpeg", "1920x1080", 30)),
    "sony mjpeg over nv12": (("corpus", "formats-sony-ilce-7m4.txt"), ("mjpeg", "1920x1080", 30)),
    "ipevo mjpeg 8mp": (("corpus", "formats-ipevo-ziggi-hd-plus.txt"), ("mjpeg", "3264x2448", 15)),
    "elp stereo": (("corpus", "formats-elp-3d-usb-stereo-camera.txt"), ("mjpeg", "3200x1200", 60)),
    "orbbec repeated sizes": (("corpus", "formats-orbbec-astra-stereo-s-u3-color.txt"), ("mjpeg", "2592x1944", 25)),
    "mmal stepwise h264": (("corpus", "formats-rpi-camera-bcm2835-mmal-stepwise.txt"), ("h264", "2592x1944", 30)),
    "imx708 raw only": (
        ("corpus", "formats-rpi-camera-module-3-imx708-unicam-stepwise.txt"),
        ("yuyv", "16376x16376", 30),
    ),
    "elp 4k": (("fixture", "info-formats-elp-4k-usb-camera-video8.txt"), ("mjpeg", "3840x2160", 30)),
    "kodak square tie keeps driver order": (("fixture", "formats-kodak-pixpro-4k.txt"), ("mjpeg", "3840x2160", 5)),
    "pico stepwise interval": (("fixture", "formats-rp2040-uvc-stepwise-interval.txt"), ("yuyv", "320x240", 25)),
}


@pytest.mark.parametrize("case", sorted(RECOMMEND_CASES))
def test_recommend(case: str) -> None:
    (kind, name), (input_format, resolution, framerate) = RECOMMEND_CASES[case]
    links = ("/dev/v4l/by-path/x", "/dev/v4l/by-id/usb-Cam-video-index0")
    block = recommend(camera(recorded(source_file(kind, name)), card="Cam", links=links))
    assert block == {
        "device": "/dev/v4l/by-id/usb-Cam-video-index0",
        "name": "Cam",
        "input_format": input_format,
        "resolution": resolution,
        "framerate": framerate,
    }


def test_recommend_without_by_id_uses_node_and_skips_non_capture() -> None:
    node = camera(corpus("formats-sony-ilce-7m4.txt"), path="/dev/video2", links=("/dev/v4l/by-path/p-video-index0",))
    assert recommend(node)["device"] == "/dev/video2"  # type: ignore[index]
    metadata = V4L2Device("/dev/video5", "EMEET", "uvcvideo", "usb-1", False, (), (), caps=("Metadata Capture",))
    assert recommend(metadata) is None
    assert recommend(camera(corpus("formats-emeet-smartcam-s800-video5-metadata.txt"))) is None


def test_render_human_flags_a_guessed_framerate() -> None:
    mmal = camera(corpus("formats-rpi-camera-bcm2835-mmal-stepwise.txt"), card="mmal service 16.1", path="/dev/video2")
    report = render_human([mmal])
    assert "  # /dev/video2: the driver lists no frame rates, 30 is a guess\n  cam1:\n" in report
    assert "      32x32 - 2592x1944 step 2/2 @ rates not listed" in report
    assert yaml_part(report)["cameras"]["cam1"]["input_format"] == "h264"  # type: ignore[index]


@pytest.mark.parametrize("card", ["yes", "123", "x: y # z", "'quoted'", "- dash", "Caméra HD", "@odd", "null", "1.5"])
def test_render_human_yaml_keeps_awkward_card_names_as_strings(card: str) -> None:
    node = camera(corpus("formats-sony-ilce-7m4.txt"), card=card)
    entry = yaml_part(render_human([node]))["cameras"]["cam1"]  # type: ignore[index]
    assert entry == recommend(node)
    assert entry["name"] == card  # type: ignore[index]


def test_render_human_yaml_lists_keys_in_config_order_on_one_line_each() -> None:
    card = "USB Camera " * 12  # longer than PyYAML's default 80-column fold
    report = render_human([camera(corpus("formats-sony-ilce-7m4.txt"), card=card.strip())])
    entry = report[report.index("  cam1:\n") :].splitlines()[1:]
    assert [line.split(":")[0].strip() for line in entry] == [
        "device",
        "name",
        "input_format",
        "resolution",
        "framerate",
    ]
    assert f"    name: {card.strip()}" in entry


# --- check_mode ----------------------------------------------------------------------------------------


C920 = "/dev/video0 (HD Pro Webcam C920)"


@pytest.fixture
def c920() -> V4L2Device:
    """Return the Logitech C920 capture node from the corpus."""
    return camera(corpus("formats-logitech-c920-with-all.txt"), card="HD Pro Webcam C920")


@pytest.mark.parametrize(
    ("input_format", "width", "height", "fps"),
    [
        ("h264", 1920, 1080, 30),
        ("mjpeg", 1280, 720, 7.5),
        ("yuyv", 2304, 1536, 2),
        (None, 640, 480, 24),
        ("h264", 1920, 1080, 29.97),
    ],
)
def test_check_mode_accepts_offered_modes(
    c920: V4L2Device, input_format: str | None, width: int, height: int, fps: float
) -> None:
    assert check_mode(c920, input_format, width, height, fps) is None


@pytest.mark.parametrize(
    ("input_format", "width", "height", "fps", "message"),
    [
        ("mjpeg", 1920, 1080, 60, f"1920x1080@60 mjpeg not offered by {C920}; nearest: 1920x1080@30 mjpeg"),
        ("h264", 2560, 1440, 30, f"2560x1440@30 h264 not offered by {C920}; nearest: 1920x1080@30 h264"),
        ("yuyv", 1920, 1080, 30, f"1920x1080@30 yuyv not offered by {C920}; nearest: 1920x1080@5 yuyv"),
        (
            "hevc",
            1920,
            1080,
            30,
            f"1920x1080@30 hevc not offered by {C920} (no hevc format); nearest: 1920x1080@30 h264",
        ),
        (None, 1920, 1080, 60, f"1920x1080@60 not offered by {C920}; nearest: 1920x1080@30 h264"),
    ],
)
def test_check_mode_names_the_nearest_mode(
    c920: V4L2Device, input_format: str | None, width: int, height: int, fps: float, message: str
) -> None:
    assert check_mode(c920, input_format, width, height, fps) == message


def test_check_mode_stepwise_sizes_and_intervals() -> None:
    mmal = camera(corpus("formats-rpi-camera-bcm2835-mmal-stepwise.txt"), card="mmal service 16.1", path="/dev/video2")
    assert check_mode(mmal, "h264", 1640, 1232, 30) is None
    assert check_mode(mmal, "h264", 1641, 1232, 30) == (
        "1641x1232@30 h264 not offered by /dev/video2 (mmal service 16.1); nearest: 1640x1232@30 h264"
    )
    assert check_mode(mmal, "h264", 3840, 2160, 30) == (
        "3840x2160@30 h264 not offered by /dev/video2 (mmal service 16.1); nearest: 2592x1944@30 h264"
    )
    pico = camera(fixture("formats-rp2040-uvc-stepwise-interval.txt"), card="Pico")
    assert check_mode(pico, "yuyv", 320, 240, 10) is None
    assert check_mode(pico, "yuyv422", 320, 240, 30) == (
        "320x240@30 yuyv422 not offered by /dev/video0 (Pico); nearest: 320x240@25 yuyv"
    )
    assert check_mode(camera(fixture("formats-usb-pc-camera-stepwise-interval.txt")), "mjpeg", 1280, 720, 30) is None


def test_check_mode_on_a_node_without_formats() -> None:
    metadata = V4L2Device("/dev/video5", "EMEET", "uvcvideo", "usb-1", False, (), (), caps=("Metadata Capture",))
    assert check_mode(metadata, "h264", 1920, 1080, 30) == (
        "1920x1080@30 h264 not offered by /dev/video5 (EMEET): it lists no video capture formats"
    )


def test_input_format_names_round_trip() -> None:
    assert [input_format_name(f) for f in ("H264", "MJPG", "YUYV", "NV12", "Y10")] == [
        "h264",
        "mjpeg",
        "yuyv",
        "nv12",
        "y10",
    ]
    assert fourccs_for("mjpeg") == ("MJPG", "JPEG")
    assert fourccs_for("yuyv422") == ("YUYV",)
    assert fourccs_for("NV12") == ("NV12",)
    assert fourccs_for("y10") == ("Y10",)
