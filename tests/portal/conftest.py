"""Fixtures of the self-service page's tests (pages, security, phone API, browser).

- `portal_sample`: seven monthly cycles of a few customers issued once per session (so a
  customer has more invoices than the last six), with a known customer who has a mobile number
  of their own, another customer, and a number nobody has;
- `portal_home` / `make_runtime` / `portal_runtime`: a private copy of it per test, and
  runtimes over the copy with settings overrides (`make_runtime(otp_ttl_seconds=600)`);
- `clock`: the time the page sees, moved by the test (`clock.advance(899)`);
- `visitor`: a browser-like visitor of the page through Starlette's TestClient, each with its
  own cookies, that can ask for a code, read it from the SMS outbox and sign in;
- `serve_portal`: the real `make portal` server (uvicorn, two workers) in a subprocess over a
  given INVOICES_HOME, with its log; `http_visitor` visits it as `visitor` visits a TestClient.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from billing.domain.phones import is_mobile
from tests.support.paths import REPO

CYCLES = tuple(f"2026-{month:02d}" for month in range(5, 12))  # seven: the last six and one more
CUSTOMERS = 6
SEED = 7
UNKNOWN_PHONE = "+40799000111"  # a mobile number no customer of the sample has
BASE_URL = "http://127.0.0.1:8000"
# The page's clock starts the day after the last cycle was issued.
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LOG_CONFIG = REPO / "portal" / "logging.json"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_CODE = re.compile(r"\b(\d{6})\b")


@dataclass(frozen=True)
class PortalSample:
    """An INVOICES_HOME after seven cycles, never changed by a test (take a copy)."""

    home: Path
    source: Path
    cycles: tuple[str, ...]
    customer_id: str  # speaks Romanian, has an e-mail address and a mobile number no one shares
    phone: str  # that number, E.164
    other_customer_id: str  # another customer, with another number
    other_phone: str
    spare_phones: tuple[str, ...]  # the mobile numbers of the other customers, one each
    unknown_phone: str = UNKNOWN_PHONE

    def env(self, home: Path, **overrides: object) -> dict[str, str]:
        """The environment (contract 3) of the embedded setup over `home`, with overrides given
        by setting name: `env(home, codes_per_phone=3)` sets INVOICES_CODES_PER_PHONE."""
        env = {"INVOICES_HOME": str(home), "INVOICES_SOURCE_URL": str(self.source)}
        env.update({f"INVOICES_{k.upper()}": str(v) for k, v in overrides.items()})
        return env

    def copy_to(self, folder: Path) -> Path:
        """A private copy of the home under `folder` (a fraction of a second)."""
        target = folder / "home"
        shutil.copytree(self.home, target)
        return target


@pytest.fixture(scope="session")
def portal_sample(tmp_path_factory) -> PortalSample:
    """Cycles 2026-05 to 2026-11 of the same six customers (`invoices sample <cycle> --customers
    6 --seed 7`), each run end to end with notices, once for the whole session."""
    from billing import pipeline
    from billing.config import Settings
    from billing.runtime import Runtime
    from sample_data.generator import write_cycle
    from storage import ledger
    from storage.customers import customers_by_phone, standing

    root = tmp_path_factory.mktemp("portal-sample")
    source, home = root / "cycles", root / "home"
    for cycle_id in CYCLES:
        write_cycle(source, cycle_id, CUSTOMERS, seed=SEED)
    settings = Settings.from_env({"INVOICES_HOME": str(home), "INVOICES_SOURCE_URL": str(source)})
    runtime = Runtime(settings)
    for cycle_id in CYCLES:
        pipeline.run_cycle(runtime, cycle_id)
    runtime.portal_keys  # noqa: B018 - the page's key, made once, shared by every copy
    candidates = []
    with runtime.ledger.connect() as conn:
        for number in range(1, CUSTOMERS + 1):
            found = standing(conn, f"C{number:07d}")
            if found is None:
                continue
            c = found.customer
            if is_mobile(c.phone) and customers_by_phone(conn, c.phone) == [c.customer_id]:
                candidates.append(c)
    # closing the last connection checkpoints SQLite's write-ahead log into ledger.db
    ledger._engines.pop(settings.ledger_url).dispose()
    known = next(
        c
        for c in candidates
        if c.language == "ro" and c.email and c.delivery == "electronic" and c.notify != "none"
    )
    other = next(c for c in candidates if c.customer_id != known.customer_id)
    spare = tuple(c.phone for c in candidates if c not in (known, other))
    return PortalSample(
        home, source, CYCLES, known.customer_id, known.phone, other.customer_id, other.phone, spare
    )


@pytest.fixture
def portal_home(portal_sample, tmp_path) -> Path:
    return portal_sample.copy_to(tmp_path)


@pytest.fixture
def make_runtime(portal_sample, portal_home):
    """`make_runtime(**overrides)`: a Runtime over the test's copy; engines closed afterwards."""
    from billing.config import Settings
    from billing.runtime import Runtime
    from storage import ledger

    urls = []

    def make(**overrides) -> Runtime:
        settings = Settings.from_env(portal_sample.env(portal_home, **overrides))
        urls.append(settings.ledger_url)
        return Runtime(settings)

    yield make
    for url in set(urls):
        engine = ledger._engines.pop(url, None)
        if engine is not None:
            engine.dispose()


@pytest.fixture
def portal_runtime(make_runtime):
    return make_runtime()


class Clock:
    """The page's clock, moved by hand."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


class SmsOutbox:
    """`$INVOICES_HOME/outbox/sms.jsonl`, where the file transport writes every SMS (contract 6)."""

    def __init__(self, home: Path) -> None:
        self.path = home / "outbox" / "sms.jsonl"

    def lines(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(raw) for raw in self.path.read_text("utf-8").splitlines() if raw]

    def code_messages(self, phone: str) -> list[dict]:
        """The code SMS sent to `phone` (E.164), oldest first."""
        return [m for m in self.lines() if m["recipient"] == phone and m["key"].startswith("code:")]

    def wait_for_code(self, phone: str, seen: int, timeout: float = 10.0) -> str:
        """The code of the first SMS to `phone` after the `seen` it had: the page may answer
        before its transport has written the SMS (a zero answer time in tests)."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.code_messages(phone)
            if len(messages) > seen:
                return _CODE.search(messages[seen]["text"]).group(1)
            assert time.monotonic() < deadline, f"no code SMS to {phone} in {timeout} s"
            time.sleep(0.01)


@pytest.fixture
def outbox(portal_home) -> SmsOutbox:
    return SmsOutbox(portal_home)


def form_token(html: str) -> str:
    """The form token of a page (every form of a page carries the same one)."""
    found = _CSRF.search(html)
    assert found, "the page has no form token"
    return found.group(1)


@dataclass
class Visitor:
    """One visitor of the page (a browser: its own cookies) through `client`, an httpx client
    (a TestClient, or a plain client of a running server). Requests never follow redirects."""

    client: httpx.Client
    outbox: SmsOutbox
    token: str = ""  # the form token of the last page seen
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request

    def get(self, path: str, **kw) -> httpx.Response:
        response = self.client.get(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)
        if "text/html" in response.headers.get("content-type", ""):
            found = _CSRF.search(response.text)
            self.token = found.group(1) if found else self.token
        return response

    def post(self, path: str, data: dict | None = None, token: bool = True, **kw):
        """POST a form, with the form token of the last page seen unless `token` is False."""
        form = dict(data or {})
        if token:
            form.setdefault("csrf", self.token or self._fresh_token())
        response = self.client.post(
            path, data=form, headers={**self.headers, **kw.pop("headers", {})}, **kw
        )
        if "text/html" in response.headers.get("content-type", ""):
            found = _CSRF.search(response.text)
            self.token = found.group(1) if found else self.token
        return response

    def _fresh_token(self) -> str:
        self.get("/")
        return self.token

    def request_code(self, phone: str, typed: str | None = None) -> httpx.Response:
        """Ask for a code for `phone` and only the answer: no waiting for an SMS (to an unknown
        number none comes, and `ask_code` waits 3 s to be sure of it)."""
        self.get("/")
        return self.post("/", {"phone": typed or phone})

    def ask_code(self, phone: str, typed: str | None = None) -> tuple[httpx.Response, str | None]:
        """Ask for a code for `phone` (E.164; `typed` as the customer writes it); the answer
        and the code the SMS carried (None when no SMS came: an unknown number)."""
        seen = len(self.outbox.code_messages(phone))
        response = self.request_code(phone, typed)
        if response.status_code != 200:
            return response, None
        try:
            return response, self.outbox.wait_for_code(phone, seen, timeout=3.0)
        except AssertionError:
            return response, None

    def enter_code(self, code: str) -> httpx.Response:
        return self.post("/code", {"code": code})

    def sign_in(self, phone: str) -> str:
        """Sign in with a code sent to `phone`; the session cookie's value."""
        response, code = self.ask_code(phone)
        assert response.status_code == 200 and code, response.text
        response = self.enter_code(code)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/account"
        self.get("/account")
        return self.cookie("portal_session")

    def cookie(self, name: str) -> str | None:
        return self.client.cookies.get(name)

    def set_cookie(self, name: str, value: str) -> None:
        self.client.cookies.delete(name)
        if value is not None:
            self.client.cookies.set(name, value, domain=_cookie_domain(self.client))


def _cookie_domain(client: httpx.Client) -> str:
    host = client.base_url.host
    return host if "." in host else f"{host}.local"  # as http.cookiejar stores a dotless host


@pytest.fixture
def visitor(portal_runtime, clock, outbox):
    """`visitor(runtime=None, answer_seconds=0.0, base_url=BASE_URL, address="testclient")`: a
    new visitor of a page over the test's runtime and clock (answers at once unless
    `answer_seconds`), coming from `address` (what the page takes for the client's address)."""
    from portal.app import create_app

    stack = []

    def make(
        runtime=None,
        answer_seconds: float = 0.0,
        base_url: str = BASE_URL,
        address: str = "testclient",
    ) -> Visitor:
        app = create_app(runtime or portal_runtime, clock=clock, answer_seconds=answer_seconds)
        client = TestClient(app, base_url=base_url, follow_redirects=False, client=(address, 50000))
        client.__enter__()  # one event loop for the client's life: SMS tasks outlive a request
        stack.append(client)
        return Visitor(client, outbox)

    yield make
    for client in reversed(stack):
        client.__exit__(None, None, None)


@pytest.fixture
def http_visitor():
    """`http_visitor(server, **headers)`: a visitor of a running server (see `serve_portal`),
    over plain HTTP, sending `headers` with every request (e.g. a proxy's X-Forwarded-For)."""
    clients: list[httpx.Client] = []

    def make(server: PortalServer, **headers: str) -> Visitor:
        client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
        clients.append(client)
        return Visitor(client, SmsOutbox(server.home), headers=headers)

    yield make
    for client in clients:
        client.close()


# --- the real server ------------------------------------------------------------------------


class PortalServer:
    """`make portal` in a subprocess: uvicorn, its workers, and the log they write (stderr)."""

    def __init__(self, process: subprocess.Popen, url: str, log_path: Path, home: Path) -> None:
        self.process, self.url, self.log_path, self.home = process, url, log_path, home

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def access(self, since: int = 0) -> list[tuple[int, str, str, int]]:
        """(worker pid, method, route, status) of each request logged after byte `since`."""
        text = self.log_path.read_bytes()[since:].decode("utf-8", errors="replace")
        return [
            (int(pid), method, route, int(status))
            for pid, method, route, status in re.findall(
                r"portal\.access \[(\d+)\] (\w+) (\S+) (\d{3}) ", text
            )
        ]

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # uvicorn stops its workers, then itself
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only its workers
                self.process.wait(timeout=10)


def _debug_log_config(folder: Path) -> Path:
    """portal/logging.json with every logger at DEBUG, and a root handler so nothing logged by
    any library is lost: what an operator chasing a problem would run."""
    config = json.loads(LOG_CONFIG.read_text("utf-8"))
    for name, logger in config["loggers"].items():
        if name != "uvicorn.access":
            logger["level"] = "DEBUG"
    config["root"] = {"handlers": ["stderr"], "level": "DEBUG"}
    path = folder / "logging-debug.json"
    path.write_text(json.dumps(config), "utf-8")
    return path


@pytest.fixture(scope="session")
def serve_portal():
    """`serve_portal(env, debug=False, workers=2)`: start the page as `make portal` does
    (uvicorn portal.app:create_app --factory, --proxy-headers trusting 127.0.0.1, the log
    configured by portal/logging.json, every logger at DEBUG with `debug`) on a free port of
    127.0.0.1 with the INVOICES_* variables of `env`; stopped at the end of the session (or by
    its `stop()`)."""
    servers: list[PortalServer] = []

    def start(env: dict[str, str], debug: bool = False, workers: int = 2) -> PortalServer:
        home = Path(env["INVOICES_HOME"])
        port = _free_port()
        log_path = home.parent / f"portal-{port}.log"
        log_config = _debug_log_config(home.parent) if debug else LOG_CONFIG
        command = [
            *_uvicorn(), "portal.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1",
            "--no-access-log", "--log-config", str(log_config),
        ]  # fmt: skip
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("INVOICES_")}
        child_env.update(env)
        child_env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "dags")])
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=REPO, env=child_env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        server = PortalServer(process, f"http://127.0.0.1:{port}", log_path, home)
        servers.append(server)
        _wait_until_serving(server, workers)
        return server

    yield start
    for server in servers:
        server.stop()


def _uvicorn() -> list[str]:
    script = Path(sys.executable).with_name("uvicorn")
    return [str(script)] if script.exists() else [sys.executable, "-m", "uvicorn"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_serving(server: PortalServer, workers: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"the page's server stopped while starting:\n{server.log()[-3000:]}")
        if server.log().count("Application startup complete") >= workers:
            try:
                if httpx.get(f"{server.url}/static/portal.css", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"the page's server did not start in {timeout} s:\n{server.log()[-3000:]}")
        time.sleep(0.1)
