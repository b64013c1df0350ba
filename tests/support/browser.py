"""A real browser for the self-service page's tests: Debian's Chromium driven by Playwright.

`launch_chromium(playwright)` starts /usr/bin/chromium headless (`make browser` installs it;
Playwright's own browser download cannot reach its host from our machines). Starting Playwright
and the browser takes about a second on two cores, a new context with its page about half a
second, so a test session shares one browser and each test opens its own context
(`tests.support.browser_fixtures`).

`phone_context(browser)` is a context like the phone most customers read their invoices on:
390 x 844 CSS pixels at 3x, touch, mobile layout, Romanian locale, downloads accepted. With
`is_mobile` Chromium lays out a page without `<meta name="viewport" content="width=device-width">`
980 pixels wide, as a phone does, so `window.innerWidth == 390` also checks that meta tag.

`axe_violations(page)` runs axe-core (the copy shipped in axe-playwright-python) on the page as
it is now and returns its serious and critical violations; `format_violations` renders them for
an assertion message:

    violations = axe_violations(page)
    assert not violations, format_violations(violations)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from axe_playwright_python.base import AXE_SCRIPT
from playwright.sync_api import Browser, BrowserContext, Page, Playwright

CHROMIUM = "/usr/bin/chromium"

# Headless without a sandbox (we run as root) and without a GPU, and nothing that calls out on
# its own (background fetches, component updates, sync, QUIC): our machines reach no host but
# the package registries, and Chromium misbehaves when its own requests go unanswered.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Debian's launcher means to add this when /dev/shm is small, but its test breaks on
    # machines with two /dev/shm mounts: say it ourselves, or a small /dev/shm crashes tabs.
    "--disable-dev-shm-usage",
)

PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
    "locale": "ro-RO",
    "accept_downloads": True,
}

IMPACTS = ("minor", "moderate", "serious", "critical")


def launch_chromium(playwright: Playwright, executable_path: str | Path = CHROMIUM) -> Browser:
    """Debian's Chromium, headless, with the flags our machines need. Fails with what to do
    when the browser is not installed, rather than with Playwright's advice to download one."""
    if not Path(executable_path).is_file():
        raise FileNotFoundError(
            f"Chromium is required at {executable_path} for the browser tests: run `make browser` "
            "as root (it installs Debian's chromium package)"
        )
    return playwright.chromium.launch(
        executable_path=str(executable_path), headless=True, args=list(CHROMIUM_ARGS)
    )


def phone_context(browser: Browser, **overrides: Any) -> BrowserContext:
    """A new context shaped like a customer's phone (`PHONE`); keyword arguments override or
    add to `Browser.new_context`'s options."""
    return browser.new_context(**{**PHONE, **overrides})


def axe_violations(
    page: Page, impacts: Iterable[str] = ("serious", "critical")
) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, of the given impacts, each as
    {"id", "impact", "help", "targets"}: targets holds one CSS selector per offending node
    (`>>>` where it crosses into an iframe or a shadow root)."""
    wanted = set(impacts)
    unknown = wanted - set(IMPACTS)
    if unknown:
        # a misspelt impact would filter out everything and let every page pass
        raise ValueError(f"unknown axe impact {sorted(unknown)}: axe uses {IMPACTS}")
    # axe-core is 0.5 MB of script: inject it once per document, not on every check
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SCRIPT)
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "targets": [_selector(node["target"]) for node in violation["nodes"]],
        }
        for violation in results["violations"]
        if violation["impact"] in wanted
    ]


def format_violations(violations: list[dict[str, Any]]) -> str:
    """One line per violation, then its nodes, for an assertion message."""
    if not violations:
        return "no accessibility violations"
    lines = [f"{len(violations)} accessibility violation(s):"]
    for violation in violations:
        lines.append(f"  {violation['id']} ({violation['impact']}): {violation['help']}")
        lines.extend(f"      {target}" for target in violation["targets"])
    return "\n".join(lines)


def _selector(target: str | list) -> str:
    # axe's target is a list of selectors, one per frame; a shadow-DOM step is a list itself
    if isinstance(target, str):
        return target
    return " >>> ".join(_selector(part) for part in target)
