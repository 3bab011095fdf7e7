"""Shared test fixtures.

Real public data sets live in ``../shared/data`` beside the project. CI always
has them, so a missing folder is a failure there (never a skip); on a
developer machine without them the tests that need them are skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEGMENTATION_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; fails in CI when missing, skips elsewhere."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data folder {SHARED_DATA} is missing in CI")
        pytest.skip(f"shared data folder {SHARED_DATA} not found")
    return SHARED_DATA


def _cells(html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", html, flags=re.S)]


def assert_pages_fit_for_a_manager(run_dir: Path) -> None:
    """No scientific notation, NaN/None/<NA>, cut-off cells, warnings or server paths in the
    index or any report page of ``run_dir``; findings at the top and a conclusion at the end of
    every report."""
    index = (run_dir / "index.html").read_text()
    assert re.search(r"\d\.?\d*e[+-]\d", re.sub(r"<[^>]+>", " ", index)) is None, "index: scientific notation"
    for page in sorted(run_dir.glob("0*.html")):
        html = page.read_text()
        cells = _cells(html)
        sci = [c for c in cells if re.search(r"\d\.?\d*e[+-]\d", c)]
        assert not sci, f"{page.name}: scientific notation {sci[:5]}"
        missing = [c for c in cells if c in ("NaN", "nan", "None", "<NA>", "&lt;NA&gt;", "NaT")]
        assert not missing, f"{page.name}: missing values shown as {missing[:5]}"
        cut = [c for c in cells if c.endswith(("…", "..."))]
        assert not cut, f"{page.name}: cut-off cells {cut[:5]}"
        body = html[html.index("<body"):]
        text = re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", body, flags=re.S))
        sci_text = re.findall(r"\d\.\d+e[+-]\d+", text)
        assert not sci_text, f"{page.name}: scientific notation in the text {sci_text[:5]}"
        for bad in ("Warning", "site-packages", str(ROOT), "Traceback", "segmentation.value import"):
            assert bad not in text, f"{page.name}: shows {bad!r}"
        assert re.search(r"\bnan\b|NaN ?(%|weeks|days|points|customers)", text) is None, f"{page.name}: shows NaN in text"
        first_h2 = body.find("<h2")
        assert "Key findings" in body and (first_h2 < 0 or body.index("Key findings") < first_h2), f"{page.name}: findings not first"
        assert "What this means and what to do next" in body, f"{page.name}: no conclusion"
        assert body.index("What this means and what to do next") > len(body) // 2, f"{page.name}: conclusion not at the end"
