"""`AnafClient`: ANAF's e-Factura API (upload, B2C upload, message status, download, the paged
message list), over httpx, with OAuth2 bearer tokens refreshed before they expire.

Every call answers a value or raises one of:
- `RateLimited`: HTTP 204 or ANAF's limit message; the caller backs off and tries later;
- `UploadUnanswered`: an upload whose reply never came (a timeout, a dropped connection): ANAF
  may have recorded it, so the caller must find it in the message list before uploading again;
- `AnafRefused`: ANAF refused the request itself (ExecutionStatus 1 and its messages);
- `RetryableDeliveryError`: anything else a later try may mend (5xx, a dropped connection on a
  read-only call).
Tokens, the XML and the server's body never reach the log.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from lxml import etree

from billing.domain.errors import ConfigurationError, DeliveryError, RetryableDeliveryError

log = logging.getLogger(__name__)

DEFAULT_TOKEN_URL = "https://logincert.anaf.ro/anaf-oauth2/v1/token"
REFRESH_MARGIN = 120.0  # seconds before expiry a token is refreshed
LIMIT_MARKERS = ("S-au facut deja", "limita")  # ANAF's words for a reached limit
LIST_DAYS = 60  # how far back ANAF lists messages
# what ANAF lists of the invoices this CIF sent: accepted ones and refused ones (the list also
# holds invoices received from suppliers and buyers' messages, none of them ours)
SENT_KINDS = ("FACTURA TRIMISA", "ERORI FACTURA")


class RateLimited(RetryableDeliveryError):
    """ANAF's limits are reached (HTTP 204 or its limit message): back off."""


class UploadUnanswered(RetryableDeliveryError):
    """An upload's reply never came: it may be at ANAF. Look for it before uploading again."""


class AnafRefused(DeliveryError):
    """ANAF refused the request (ExecutionStatus 1): `errors` are its messages."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("ANAF refused the request: " + "; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class MessageStatus:
    """`stareMesaj`: "in prelucrare", "ok", "nok" or "XML cu erori nepreluat de sistem", and
    the id of its download once processed."""

    state: str
    download_id: str | None = None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Message:
    """One entry of `listaMesajeFactura`."""

    upload_index: str
    download_id: str | None
    kind: str
    created: str


@dataclass
class Tokens:
    """The OAuth2 tokens: the access token and when it expires (epoch seconds; 0: unknown,
    used until refused), and the refresh token that gets a new pair."""

    access_token: str
    refresh_token: str = ""
    expires_at: float = 0.0


class AnafClient:
    """One client per process (thread-safe). `save_tokens` is called with each refreshed pair
    (the refresh token may change), so another process can start from it."""

    def __init__(
        self,
        base_url: str,
        cif: str,
        tokens: Tokens,
        token_url: str = DEFAULT_TOKEN_URL,
        client_id: str = "",
        client_secret: str = "",
        timeout: float = 30.0,
        save_tokens: Callable[[Tokens], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        digits = cif.upper().removeprefix("RO").strip()
        if not digits.isdigit():
            raise ConfigurationError(f"INVOICES_EFACTURA_CIF: {cif!r} is not a CUI")
        if not tokens.access_token and not tokens.refresh_token:
            raise ConfigurationError(
                "e-Factura needs an access token or a refresh token "
                "(INVOICES_EFACTURA_ACCESS_TOKEN / INVOICES_EFACTURA_REFRESH_TOKEN)"
            )
        self.base_url = base_url.rstrip("/")
        self.cif = digits
        self.tokens = tokens
        self.token_url = token_url
        self.client_id, self.client_secret = client_id, client_secret
        self.save_tokens = save_tokens
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"AnafClient(base_url={self.base_url!r}, cif={self.cif!r})"

    def close(self) -> None:
        self._http.close()

    # --- the API ---------------------------------------------------------------------------

    def upload(self, xml: bytes, b2c: bool, credit_note: bool = False) -> str:
        """Upload one invoice XML; its upload index (`index_incarcare`)."""
        path = "uploadb2c" if b2c else "upload"
        params = {"standard": "CN" if credit_note else "UBL", "cif": self.cif}
        try:
            response = self._call("POST", path, params=params, content=xml,
                                  headers={"Content-Type": "text/plain"})  # fmt: skip
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise UploadUnanswered(f"upload to ANAF: no reply ({type(exc).__name__})") from exc
        root = _xml(response)
        if root.get("ExecutionStatus") != "0" or not root.get("index_incarcare"):
            raise AnafRefused(
                _errors(root) or ["ExecutionStatus " + str(root.get("ExecutionStatus"))]
            )
        return root.get("index_incarcare")

    def status(self, upload_index: str) -> MessageStatus:
        root = _xml(self._read("stareMesaj", {"id_incarcare": upload_index}))
        if errors := _errors(root):
            raise AnafRefused(errors)
        return MessageStatus(root.get("stare") or "", root.get("id_descarcare"))

    def download(self, download_id: str) -> bytes:
        """The ZIP of a processed message (the signed invoice, or ANAF's error list)."""
        response = self._read("descarcare", {"id": download_id})
        if response.content[:2] != b"PK":
            raise AnafRefused([_json_error(response) or "the download is not a ZIP"])
        return response.content

    def messages(self, since: datetime, until: datetime | None = None) -> Iterator[Message]:
        """Every message ANAF lists for this CIF from `since` (at most 60 days back) to `until`
        (now), page by page: `listaMesajePaginatieFactura` answers 500 a page, where the
        unpaged `listaMesajeFactura` refuses a list longer than that, as a day of a large
        cycle's uploads is. Pages are read as they are consumed."""
        end = until or datetime.now(UTC)
        start = max(since, end - timedelta(days=LIST_DAYS) + timedelta(minutes=1))
        window = {"startTime": str(_millis(start)), "endTime": str(_millis(end)), "cif": self.cif}
        page = 1
        while True:
            body = self._read("listaMesajePaginatieFactura", {**window, "pagina": str(page)}).json()
            if "mesaje" not in body:
                if str(body.get("eroare", "")).startswith("Nu exista mesaje"):
                    return
                raise AnafRefused([str(body.get("eroare", "no message list"))])
            for m in body["mesaje"]:
                yield Message(str(m["id_solicitare"]), m.get("id") and str(m["id"]),
                              m.get("tip", ""), m.get("data_creare", ""))  # fmt: skip
            if page >= int(body.get("numar_total_pagini") or 1):
                return
            page += 1

    # --- plumbing --------------------------------------------------------------------------

    def _read(self, path: str, params: dict) -> httpx.Response:
        try:
            return self._call("GET", path, params=params)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise RetryableDeliveryError(f"ANAF {path}: {type(exc).__name__}") from exc

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        for attempt in (1, 2):
            response = self._http.request(
                method, f"{self.base_url}/{path}",
                headers={**headers, "Authorization": f"Bearer {self._token()}"}, **kwargs,
            )  # fmt: skip
            if response.status_code == 401 and attempt == 1 and self.tokens.refresh_token:
                self._refresh()  # refused before its time: refresh once and try again
                continue
            break
        if response.status_code == 204:
            raise RateLimited(f"ANAF {path}: HTTP 204 (limits reached)")
        if response.status_code == 401:
            raise ConfigurationError(f"ANAF {path}: the access token is refused (HTTP 401)")
        if response.status_code >= 500:
            raise RetryableDeliveryError(f"ANAF {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise AnafRefused([f"HTTP {response.status_code}"])
        if "json" in response.headers.get("content-type", "") and any(
            marker in (_json_error(response) or "") for marker in LIMIT_MARKERS
        ):
            raise RateLimited(f"ANAF {path}: {_json_error(response)}")
        return response

    def _token(self) -> str:
        with self._lock:
            expiring = (
                self.tokens.expires_at and self.tokens.expires_at - time.time() < REFRESH_MARGIN
            )
            if (expiring or not self.tokens.access_token) and self.tokens.refresh_token:
                self._refresh_locked()
            return self.tokens.access_token

    def _refresh(self) -> None:
        with self._lock:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        data = {"grant_type": "refresh_token", "refresh_token": self.tokens.refresh_token}
        if self.client_id:
            data |= {"client_id": self.client_id, "client_secret": self.client_secret}
        try:
            response = self._http.post(self.token_url, data=data)
        except httpx.HTTPError as exc:
            raise RetryableDeliveryError(f"ANAF token refresh: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise ConfigurationError(
                f"ANAF token refresh refused (HTTP {response.status_code}): get a new refresh "
                "token with the qualified certificate"
            )
        body = response.json()
        self.tokens = Tokens(
            body["access_token"], body.get("refresh_token") or self.tokens.refresh_token,
            time.time() + float(body.get("expires_in") or 0) if body.get("expires_in") else 0.0,
        )  # fmt: skip
        log.info("e-Factura access token refreshed")
        if self.save_tokens is not None:
            self.save_tokens(self.tokens)


def zip_invoice_errors(data: bytes) -> list[str]:
    """ANAF's error messages in a `nok` download's ZIP (empty for a signed invoice)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        errors = []
        for name in archive.namelist():
            if name.startswith("semnatura_"):
                continue
            root = etree.fromstring(archive.read(name))
            errors += [
                e.get("errorMessage") for e in root.iter("{*}Error") if e.get("errorMessage")
            ]
        return errors


def zip_invoice_number(data: bytes) -> str | None:
    """The invoice number (cbc:ID) of the invoice a download's ZIP holds, if it holds one."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if name.startswith("semnatura_"):
                continue
            root = etree.fromstring(archive.read(name))
            found = root.find(
                "{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}ID"
            )
            if found is not None:
                return found.text
    return None


def _millis(moment: datetime) -> int:
    """Epoch milliseconds, as ANAF's paged list takes its window."""
    return int(moment.timestamp() * 1000)


def _xml(response: httpx.Response) -> etree._Element:
    try:
        return etree.fromstring(response.content)
    except etree.XMLSyntaxError as exc:
        raise RetryableDeliveryError(f"ANAF answered what is not XML: {exc}") from exc


def _errors(root: etree._Element) -> list[str]:
    return [e.get("errorMessage") for e in root.iter("{*}Errors") if e.get("errorMessage")]


def _json_error(response: httpx.Response) -> str | None:
    try:
        return json.loads(response.content).get("eroare")
    except (ValueError, AttributeError):
        return None
