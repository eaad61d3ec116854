"""The report page in headless Chromium (Debian's, installed by `make test`)."""

import shutil

import pytest

from transforms.quality import build_report

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)")


def test_page_renders_without_console_errors_and_shows_pictures(clean_dataset, tmp_path):
    from playwright.sync_api import sync_playwright

    build_report(str(clean_dataset), today="2026-02-01")
    page_url = (clean_dataset / "_quality" / "index.html").as_uri()
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_url, wait_until="load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
        headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert headings == ["Summary", "Distributions", "Sample clips", "Worst clips by min ADE",
                        "Worst clips by sample disagreement"]
    assert len(images) >= 20 and all(complete and width > 0 for _, complete, width in images)
    assert sum(alt == "cameras at t0" for alt, _, _ in images) == 10
