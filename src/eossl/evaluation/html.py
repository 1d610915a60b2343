"""Self-contained ``report.html`` from ``report.md``, and a headless-Chromium check that it renders.

``render_html`` converts the GitHub-flavoured markdown written by :mod:`eossl.evaluation.report` (headings,
pipe tables, bullet lists, fenced code) with ``markdown-it-py`` and inlines every referenced image as a
``data:`` URI, so the page needs neither the run folder nor the network. A small inline script records on
``<body>`` how many tables and images the browser rendered, which ``check_in_chromium`` reads back from
Chromium's ``--dump-dom`` output.
"""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from markdown_it import MarkdownIt

from eossl.io import write_text_atomic

IMAGE_MIME = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FALLBACK = Path("/usr/bin/chromium")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       max-width: 1100px; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; color: #1f2328; }
h1, h2, h3 { line-height: 1.25; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
.table-wrap { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; }
th, td { border: 1px solid #d0d7de; padding: .3em .7em; white-space: nowrap; }
th { background: #eef1f4; }
tbody tr:nth-child(even) { background: #f6f8fa; }
td[style*="right"], th[style*="right"] { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em;
       background: #f0f0f0; padding: .1em .3em; border-radius: 3px; }
pre { background: #f0f0f0; padding: .8em 1em; overflow-x: auto; border-radius: 4px; }
pre code { background: none; padding: 0; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var body = document.body;
  var images = Array.prototype.slice.call(document.images);
  body.setAttribute("data-tables", String(document.getElementsByTagName("table").length));
  body.setAttribute("data-images", String(images.length));
  body.setAttribute("data-images-loaded",
    String(images.filter(function (img) { return img.complete && img.naturalWidth > 0; }).length));
});
"""


def _markdown() -> MarkdownIt:
    # "gfm-like" needs the optional linkify-it-py; commonmark + tables covers what report.md uses.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _data_uri(src: str, base_dir: Path, report: str) -> str:
    """The ``data:`` URI for one image source; local files only."""
    if src.startswith("data:"):
        return src
    parts = urlsplit(src)
    if parts.scheme in ("http", "https") or src.startswith("//"):
        raise ValueError(f"image {src!r} in {report} is a network URL; the HTML report must be self-contained")
    if parts.scheme and parts.scheme != "file" and len(parts.scheme) > 1:  # len 1: a Windows drive letter
        raise ValueError(f"image {src!r} in {report} has unsupported scheme {parts.scheme!r}")
    path = Path(unquote(parts.path if parts.scheme == "file" else src))
    path = path if path.is_absolute() else base_dir / path
    mime = IMAGE_MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(
            f"image {src!r} in {report} has unsupported type {path.suffix!r} (known: {sorted(IMAGE_MIME)})"
        )
    if not path.is_file():
        raise FileNotFoundError(f"image {src!r} referenced by {report} not found at {path}")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def render_html(markdown_text: str, base_dir: Path, title: str = "eossl evaluation report", *, source: str = "") -> str:
    """Full HTML5 document for ``markdown_text`` with images (relative to ``base_dir``) inlined as data URIs.

    Raises ``FileNotFoundError`` for a missing image and ``ValueError`` for a network (http/https) image.
    ``source`` names the markdown file in error messages (defaults to ``base_dir/report.md``).
    """
    base_dir = Path(base_dir)
    report = source or str(base_dir / "report.md")
    md = _markdown()
    env: dict = {}
    tokens = md.parse(markdown_text, env)
    for token in tokens:
        for child in token.children or ():
            if child.type == "image":
                child.attrSet("src", _data_uri(str(child.attrGet("src") or ""), base_dir, report))
    body = md.renderer.render(tokens, md.options, env)
    body = body.replace("<table>", '<div class="table-wrap"><table>').replace("</table>", "</table></div>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>{_CSS}</style>\n"
        f"<script>{_SCRIPT}</script>\n"
        f"</head>\n<body>\n{body}</body>\n</html>\n"
    )


def write_html(markdown_path: Path, html_path: Path | None = None, title: str = "eossl evaluation report") -> Path:
    """Render ``markdown_path`` (images relative to its folder) to ``html_path`` (default: ``report.html`` next to it).

    Written atomically via a hidden ``.<name>.tmp`` file in the same folder.
    """
    markdown_path = Path(markdown_path)
    html_path = Path(html_path) if html_path is not None else markdown_path.with_suffix(".html")
    text = render_html(
        markdown_path.read_text(encoding="utf-8"), markdown_path.parent, title, source=str(markdown_path)
    )
    write_text_atomic(html_path, text)
    return html_path


def find_chromium(chromium: str | None = None) -> str:
    """Path of a Chromium/Chrome binary: ``chromium`` if given, else the first of CHROMIUM_NAMES on PATH."""
    if chromium:
        found = shutil.which(chromium)
        if found is None:
            raise FileNotFoundError(f"Chromium binary {chromium!r} not found")
        return found
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    if CHROMIUM_FALLBACK.is_file():
        return str(CHROMIUM_FALLBACK)
    raise FileNotFoundError(
        f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} on PATH and {CHROMIUM_FALLBACK}); "
        "install Debian's chromium package: apt-get install -y chromium"
    )


def _run_chromium(binary: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="eossl-chromium-") as profile:
        cmd = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc


def _body_counts(dom: str) -> dict[str, int]:
    match = re.search(r"<body\b([^>]*)>", dom, flags=re.IGNORECASE)
    if match is None:
        raise RuntimeError("no <body> tag in Chromium's --dump-dom output")
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(1)))
    keys = {"tables": "data-tables", "images": "data-images", "images_loaded": "data-images-loaded"}
    missing = [attr for attr in keys.values() if attr not in attrs]
    if missing:
        raise RuntimeError(f"<body> lacks {missing}: the page's load script did not run (body tag: {match.group(0)})")
    return {key: int(attrs[attr]) for key, attr in keys.items()}


def check_in_chromium(
    html_path: Path, screenshot: Path | None = None, chromium: str | None = None, timeout: float = 60.0
) -> dict:
    """Open ``html_path`` in headless Chromium and return what it rendered.

    Returns ``{"tables", "images", "images_loaded"}`` counts (from the page's load script via ``--dump-dom``),
    plus ``"chromium"`` (binary), ``"version"`` and ``"screenshot"`` (path or None). With ``screenshot`` a
    1280x2400 PNG of the page is written there by a second Chromium run.
    """
    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise FileNotFoundError(f"{html_path} not found")
    binary = find_chromium(chromium)
    url = html_path.as_uri()
    counts: dict = _body_counts(_run_chromium(binary, ["--dump-dom", url], timeout).stdout)
    if screenshot is not None:
        screenshot = Path(screenshot).resolve()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        _run_chromium(binary, [f"--screenshot={screenshot}", "--window-size=1280,2400", url], timeout)
        if not screenshot.is_file():
            raise RuntimeError(f"Chromium did not write the screenshot {screenshot}")
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        version = ""
    counts.update(chromium=binary, version=version, screenshot=str(screenshot) if screenshot is not None else None)
    return counts


def render_problems(counts: dict) -> list[str]:
    """Failed checks for ``check_in_chromium`` counts: no tables, no images, images that failed to load."""
    problems = []
    if counts["tables"] < 1:
        problems.append("no <table> rendered")
    if counts["images"] < 1:
        problems.append("no <img> in the page")
    if counts["images_loaded"] != counts["images"]:
        problems.append(f"{counts['images'] - counts['images_loaded']} of {counts['images']} images failed to load")
    return problems
