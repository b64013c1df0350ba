"""The browser-test helpers on real parts: Debian's Chromium, pages served over HTTP on
127.0.0.1 by the standard library, axe-core finding (or not) what a screen reader would miss."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.browser import axe_violations, format_violations, launch_chromium

INVOICE_PDF = b"%PDF-1.4\n% a stand-in for an invoice, not a real PDF\n%%EOF\n"
LOGO_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
    b'<rect width="40" height="40" fill="#036"/></svg>'
)

# What the self-service page must be: lang, title, viewport, landmarks, a labelled input,
# an image with alternative text, the invoice as a download.
GOOD = """<!doctype html>
<html lang="ro">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Facturile mele</title>
</head>
<body>
  <main>
    <h1><img src="/logo.svg" alt="Sigla furnizorului" width="40" height="40"> Facturile mele</h1>
    <form>
      <label for="customer">Cod client</label>
      <input id="customer" name="customer" autocomplete="off">
      <button type="submit">Caută</button>
    </form>
    <p><a id="download" href="/factura.pdf" download="factura-2026-11.pdf">Descarcă factura</a></p>
  </main>
</body>
</html>
"""

# The same page broken the two ways a form page most often is: an image without alt (critical)
# and an input without a label (critical); and without the viewport meta tag.
BAD = """<!doctype html>
<html lang="ro">
<head><meta charset="utf-8"><title>Facturile mele</title></head>
<body>
  <main>
    <h1><img src="/logo.svg" width="40" height="40"> Facturile mele</h1>
    <form><input name="customer" placeholder=""><button type="submit">Caută</button></form>
  </main>
</body>
</html>
"""

FILES = {
    "/good.html": ("text/html; charset=utf-8", GOOD.encode()),
    "/bad.html": ("text/html; charset=utf-8", BAD.encode()),
    "/logo.svg": ("image/svg+xml", LOGO_SVG),
    "/factura.pdf": ("application/pdf", INVOICE_PDF),
}


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self):
        found = FILES.get(self.path)
        if found is None:
            self.send_error(404)
            return
        content_type, body = found
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # keep the test output quiet
        pass


@pytest.fixture(scope="module")
def site():
    """The pages above over real HTTP on 127.0.0.1 (a free port); yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_page_is_a_phone_screen(phone_page, site):
    phone_page.goto(f"{site}/good.html")
    screen = phone_page.evaluate(
        """() => ({width: window.innerWidth, ratio: window.devicePixelRatio,
                   language: navigator.language, touch: navigator.maxTouchPoints > 0,
                   coarse: matchMedia('(pointer: coarse)').matches})"""
    )
    assert screen == {"width": 390, "ratio": 3, "language": "ro-RO", "touch": True, "coarse": True}
    # a mobile layout: without the viewport meta tag the page is laid out 980 pixels wide
    phone_page.goto(f"{site}/bad.html")
    assert phone_page.evaluate("window.innerWidth") == 980


def test_axe_passes_the_accessible_page(phone_page, site):
    phone_page.goto(f"{site}/good.html")
    violations = axe_violations(phone_page)
    assert not violations, format_violations(violations)
    # not even a minor or moderate one: the page is a fair baseline for the filter below
    assert axe_violations(phone_page, impacts=("minor", "moderate")) == []


def test_axe_finds_the_missing_alt_and_label(phone_page, site):
    phone_page.goto(f"{site}/bad.html")
    violations = axe_violations(phone_page)
    by_id = {violation["id"]: violation for violation in violations}
    assert set(by_id) == {"image-alt", "label"}, format_violations(violations)
    assert by_id["image-alt"]["targets"] == ["img"]
    assert by_id["label"]["targets"] == ["input"]
    assert {violation["impact"] for violation in violations} <= {"serious", "critical"}
    message = format_violations(violations)
    assert "image-alt (critical): Images must have alternative text" in message
    assert "      input" in message
    assert axe_violations(phone_page, impacts=("moderate",)) == []


def test_a_misspelt_impact_is_refused(phone_page):
    with pytest.raises(ValueError, match="unknown axe impact"):
        axe_violations(phone_page, impacts=("serios",))


def test_the_invoice_downloads(phone_page, site, tmp_path):
    phone_page.goto(f"{site}/good.html")
    with phone_page.expect_download() as started:
        phone_page.get_by_role("link", name="Descarcă factura").click()
    download = started.value
    assert download.failure() is None
    assert download.suggested_filename == "factura-2026-11.pdf"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.read_bytes() == INVOICE_PDF


def test_a_missing_chromium_says_how_to_install_it(playwright_instance, tmp_path):
    with pytest.raises(FileNotFoundError, match="make browser"):
        launch_chromium(playwright_instance, executable_path=tmp_path / "chromium")
