import base64
import re
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from eossl.evaluation.html import check_in_chromium, find_chromium, render_html, render_problems, write_html

REPORT = """# eossl evaluation report

Seeds: [0, 1]. Best per column in bold.

## single-label: accuracy

| protocol | init | 1% | 10% |
|---|---|---:|---:|
| linear | simclr | **0.386 ± 0.010** | **0.503 ± 0.008** |
| knn | random | 0.383 ± 0.003 | 0.459 ± 0.013 |

## Verdict at 10% labels

- simclr beats random by 0.044

![label efficiency](label_efficiency.png)

## Configuration

```yaml
seeds: [0, 1]
fractions: [0.01, 0.1]
```
"""


def _plot(path):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 10], [0.4, 0.5], marker="o", label="simclr")
    ax.legend()
    fig.savefig(path, dpi=60, format="png")
    plt.close(fig)
    return path


@pytest.fixture
def run_dir(tmp_path):
    _plot(tmp_path / "label_efficiency.png")
    (tmp_path / "report.md").write_text(REPORT, encoding="utf-8")
    return tmp_path


def test_render_html_inlines_images_and_renders_tables(run_dir):
    page = render_html(REPORT, run_dir)
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page
    assert "<title>eossl evaluation report</title>" in page
    assert "<table>" in page and page.count("<strong>") == 2
    assert 'style="text-align:right"' in page
    assert '<code class="language-yaml">' in page and "fractions: [0.01, 0.1]" in page
    assert "<li>simclr beats random by 0.044</li>" in page
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == 1
    assert base64.b64decode(uris[0]) == (run_dir / "label_efficiency.png").read_bytes()
    assert 'src="label' not in page
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)
    assert "http://" not in page and "https://" not in page
    assert "data-images-loaded" in page  # the load script that check_in_chromium reads back


def test_render_html_escapes_raw_html_and_title(run_dir):
    page = render_html("<script>alert(1)</script>\n", run_dir, title="a <b> & c")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page
    assert "<title>a &lt;b&gt; &amp; c</title>" in page


def test_svg_and_jpeg_mime_types(run_dir):
    (run_dir / "plot.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="2" height="2"/>')
    (run_dir / "photo.JPG").write_bytes(b"\xff\xd8\xff\xe0fake")
    page = render_html("![a](plot.svg) ![b](photo.JPG)", run_dir)
    assert 'src="data:image/svg+xml;base64,' in page
    assert 'src="data:image/jpeg;base64,' in page


def test_missing_image_raises_naming_it(run_dir):
    (run_dir / "label_efficiency.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"label_efficiency\.png.*report\.md"):
        write_html(run_dir / "report.md")
    assert not (run_dir / "report.html").exists()
    assert not list(run_dir.glob(".*.tmp*"))


@pytest.mark.parametrize("src", ["http://example.com/plot.png", "https://example.com/plot.png"])
def test_network_image_rejected(run_dir, src):
    with pytest.raises(ValueError, match="self-contained"):
        render_html(f"![plot]({src})", run_dir)


def test_write_html_is_atomic_and_next_to_report(run_dir):
    path = write_html(run_dir / "report.md")
    assert path == run_dir / "report.html"
    assert path.read_text(encoding="utf-8") == render_html(REPORT, run_dir)
    assert not list(run_dir.glob(".*.tmp*"))
    other = write_html(run_dir / "report.md", run_dir / "sub.html")
    assert other.is_file() and not list(run_dir.glob(".*.tmp*"))


def test_render_problems():
    assert render_problems({"tables": 1, "images": 1, "images_loaded": 1}) == []
    assert len(render_problems({"tables": 0, "images": 0, "images_loaded": 0})) == 2
    assert render_problems({"tables": 2, "images": 2, "images_loaded": 1}) == ["1 of 2 images failed to load"]


def test_missing_chromium_tells_how_to_install(monkeypatch, tmp_path):
    import eossl.evaluation.html as html_mod

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(html_mod, "CHROMIUM_FALLBACK", tmp_path / "no-chromium")
    with pytest.raises(FileNotFoundError, match="apt-get install -y chromium"):
        find_chromium()


@pytest.mark.slow
def test_report_renders_in_chromium(run_dir, tmp_path):
    try:
        find_chromium()
    except FileNotFoundError:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    html_path = write_html(run_dir / "report.md")
    shot = tmp_path / "shot" / "report.png"
    start = time.perf_counter()
    counts = check_in_chromium(html_path, screenshot=shot, timeout=30)
    assert time.perf_counter() - start < 30
    assert counts["tables"] >= 1
    assert counts["images"] >= 1
    assert counts["images_loaded"] == counts["images"]
    assert render_problems(counts) == []
    data = shot.read_bytes()
    assert len(data) > 1000 and data.startswith(b"\x89PNG\r\n\x1a\n")
