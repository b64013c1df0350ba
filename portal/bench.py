"""Requests per second of the self-service page's account view (the latest invoice and the last
six) for a signed-in customer, through the real server: `make portal`'s uvicorn command with two
workers on 127.0.0.1, over seven cycles of a small sample issued here in a temporary folder.

    python -m portal.bench [--requests 2000] [--concurrency 8] [--workers 2] [--customers 50]

The load is a bounded number of requests from `--concurrency` clients at once, each a thread
with its own keep-alive connection (httpx), on the same machine as the server: on a small
machine the clients take part of the CPU the workers could have. When `wrk` is installed
(Debian: apt-get install wrk) a second row gives its figures for the same view over the same
number of connections, for `--wrk-seconds` (wrk bounds time, not requests).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

CHECKOUT = Path(__file__).resolve().parents[1]
CYCLES = tuple(f"2026-{month:02d}" for month in range(5, 12))


def issue_sample(home: Path, source: Path, customers: int) -> str:
    """Seven monthly cycles of `customers` issued into `home`; the E.164 number of a customer
    who alone has it and has an invoice in each cycle."""
    from billing import pipeline
    from billing.config import Settings
    from billing.domain.phones import is_mobile
    from billing.runtime import Runtime
    from sample_data.generator import write_cycle
    from storage import ledger
    from storage.customers import customers_by_phone, standing
    from storage.last_six import newest_archived_invoices

    for cycle_id in CYCLES:
        write_cycle(source, cycle_id, customers, seed=7)
    settings = Settings.from_env({"INVOICES_HOME": str(home), "INVOICES_SOURCE_URL": str(source)})
    runtime = Runtime(settings)
    for cycle_id in CYCLES:
        pipeline.run_cycle(runtime, cycle_id, send_notices=False)
    candidates = []
    with runtime.ledger.connect() as conn:
        for number in range(1, customers + 1):
            found = standing(conn, f"C{number:07d}")
            if found is None or not is_mobile(found.customer.phone):
                continue
            customer = found.customer
            if customers_by_phone(conn, customer.phone) == [customer.customer_id]:
                candidates.append(customer)
    try:
        for customer in candidates:
            if len(newest_archived_invoices(runtime.ledger, customer.customer_id)) == 6:
                return customer.phone
    finally:
        ledger._engines.pop(settings.ledger_url).dispose()
    raise SystemExit("no customer of the sample has a mobile number of their own")


def start_server(home: Path, source: Path, workers: int, log_path: Path):
    """The page as `make portal` serves it, on a free port; (process, base URL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOICES_")}
    env.update(INVOICES_HOME=str(home), INVOICES_SOURCE_URL=str(source))
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT), str(CHECKOUT / "dags")])
    command = [
        sys.executable, "-m", "uvicorn", "portal.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1", "--no-access-log",
        "--log-config", str(CHECKOUT / "portal" / "logging.json"),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=CHECKOUT, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the page's server stopped:\n{log_path.read_text()[-2000:]}")
        if log_path.read_text(errors="replace").count("Application startup complete") >= workers:
            try:
                if httpx.get(f"{url}/static/portal.css", timeout=5).status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    process.terminate()
    raise SystemExit("the page's server did not start in 90 s")


def sign_in(url: str, home: Path, phone: str) -> str:
    """The session cookie of `phone`, signed in with the code the SMS outbox receives."""
    outbox = home / "outbox" / "sms.jsonl"
    with httpx.Client(base_url=url, timeout=30) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)
        client.post("/", data={"phone": phone, "csrf": token})
        code = None
        for _ in range(200):
            lines = outbox.read_text("utf-8").splitlines() if outbox.exists() else []
            codes = [json.loads(line) for line in lines if '"code:' in line]
            if codes:
                code = re.search(r"\b(\d{6})\b", codes[-1]["text"]).group(1)
                break
            time.sleep(0.05)
        if code is None:
            raise SystemExit("no code SMS arrived")
        page = client.get("/code")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        answer = client.post("/code", data={"code": code, "csrf": token})
        if answer.status_code != 303:
            raise SystemExit(f"signing in failed: {answer.status_code}")
        return client.cookies["portal_session"]


def load(url: str, cookie: str, requests: int, concurrency: int) -> dict:
    """`requests` GETs of /account from `concurrency` clients at once."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    share = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]

    def client_run(count: int) -> None:
        nonlocal errors
        mine, failed = [], 0
        with httpx.Client(base_url=url, cookies={"portal_session": cookie}, timeout=30) as c:
            c.get("/account")  # the connection made before the clock starts
            barrier.wait()
            for _ in range(count):
                started = time.perf_counter()
                answer = c.get("/account")
                mine.append(time.perf_counter() - started)
                failed += answer.status_code != 200 or "data-number" not in answer.text
        with lock:
            latencies.extend(mine)
            errors += failed

    barrier = threading.Barrier(concurrency + 1)
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(client_run, n) for n in share]
        barrier.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "client": "httpx, a thread per connection",
        "requests": len(latencies),
        "concurrency": concurrency,
        "seconds": elapsed,
        "rate": len(latencies) / elapsed,
        "p50": quantiles[49] * 1000,
        "p95": quantiles[94] * 1000,
        "errors": errors,
    }


def load_wrk(url: str, cookie: str, concurrency: int, seconds: int) -> dict | None:
    """The same view under `wrk`, when it is installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("RESULT %d %f %f %f %d\\n", summary.requests,\n'
        "    summary.duration / 1e6, latency:percentile(50) / 1e3,\n"
        "    latency:percentile(95) / 1e3, summary.errors.status + summary.errors.connect\n"
        "    + summary.errors.read + summary.errors.write + summary.errors.timeout))\n"
        "end\n"
    )
    try:
        output = subprocess.run(
            [wrk, f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{seconds}s",
             "-s", str(script), "-H", f"Cookie: portal_session={cookie}", f"{url}/account"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        script.unlink()
    found = re.search(r"RESULT (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", output)
    total, elapsed, p50, p95, errors = found.groups()
    return {
        "client": f"wrk, {min(2, concurrency)} threads, {seconds} s",
        "requests": int(total),
        "concurrency": concurrency,
        "seconds": float(elapsed),
        "rate": int(total) / float(elapsed),
        "p50": float(p50),
        "p95": float(p95),
        "errors": int(errors),
    }


def bench(requests: int, concurrency: int, workers: int, customers: int, wrk_seconds: int):
    folder = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    home, source = folder / "home", folder / "cycles"
    process = None
    try:
        phone = issue_sample(home, source, customers)
        process, url = start_server(home, source, workers, folder / "portal.log")
        cookie = sign_in(url, home, phone)
        load(url, cookie, concurrency * 20, concurrency)  # warm both workers
        rows = [load(url, cookie, requests, concurrency)]
        if wrk_seconds > 0 and (row := load_wrk(url, cookie, concurrency, wrk_seconds)):
            rows.append(row)
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        shutil.rmtree(folder, ignore_errors=True)
    table = Table(
        title=f"self-service page: GET /account (latest invoice + last six), uvicorn "
        f"{workers} workers, {os.cpu_count()} CPUs"
    )
    for column in ("client", "requests", "concurrency", "req/s", "p50 ms", "p95 ms", "errors"):
        table.add_column(column, justify="left" if column == "client" else "right")
    for row in rows:
        table.add_row(
            row["client"], str(row["requests"]), str(row["concurrency"]), f"{row['rate']:.0f}",
            f"{row['p50']:.1f}", f"{row['p95']:.1f}", str(row["errors"]),
        )  # fmt: skip
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m portal.bench", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--wrk-seconds", type=int, default=10, help="0: no wrk row")
    args = parser.parse_args(argv)
    Console().print(
        bench(args.requests, args.concurrency, args.workers, args.customers, args.wrk_seconds)
    )


if __name__ == "__main__":
    main()
