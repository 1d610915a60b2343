"""Check that an eossl ``report.html`` renders in headless Chromium (tables drawn, every plot loaded).

Usage:
    uv run python scripts/check_report_html.py runs/demo/evaluate/report.html --screenshot /tmp/report.png

Prints the counts the page's load script recorded (tables, images, images loaded) and exits non-zero if there
is no table, no image, or an image failed to load. Needs Chromium (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from eossl.evaluation.html import check_in_chromium, render_problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html", type=Path, help="report.html to check")
    parser.add_argument("--screenshot", type=Path, default=None, help="also write a 1280x2400 PNG screenshot here")
    parser.add_argument("--chromium", default=None, help="Chromium binary (default: found on PATH)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        counts = check_in_chromium(args.html, screenshot=args.screenshot, chromium=args.chromium)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"chromium: {counts['version'] or counts['chromium']}")
    print(f"tables: {counts['tables']}  images: {counts['images']}  images loaded: {counts['images_loaded']}")
    if counts["screenshot"]:
        print(f"screenshot: {counts['screenshot']}")
    print(f"checked in {time.perf_counter() - start:.1f} s")
    problems = render_problems(counts)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if not problems:
        print("OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
