"""How long the webhook's depth check takes on hostile bodies (it runs before json.loads, holding the GIL).

    .venv/bin/python bench/bench_webhook_depth.py [--megabytes 1]

Target: linear in the body's size, a few milliseconds per megabyte; the pattern it replaced backtracked
quadratically on an unterminated string of escapes (64 KiB of `"\\` took about a minute).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, not an install

from exporter.routes.webhook import json_depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=1.0)
    size = int(parser.parse_args().megabytes * 1024 * 1024)
    bodies = {
        'unterminated `"\\` repeated': (b'"\\' * (size // 2 + 1))[:size],
        "one unterminated string of backslashes": b'{"a": "' + b"\\" * size,
        "nested brackets": b"[" * size,
        "many short strings": (b'"ab",' * (size // 5 + 1))[:size],
    }
    for name, body in bodies.items():
        started = time.perf_counter()
        depth = json_depth(body)
        elapsed = time.perf_counter() - started
        print(f"{name:42s} {len(body) / 1e6:6.2f} MB  depth {depth:8d}  {elapsed * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
