"""A simulator of ANAF's e-Factura API, as `../shared/INVOICE-RULES.md` documents it, for the tests
and `make efactura-sim`: ANAF cannot be reached from here.

    python -m tests.support.anaf_simulator [--port 8091]

Under `/{test|prod}/FCTEL/rest/`:
- `POST upload?standard=UBL&cif=<digits>` (B2B) and `POST uploadb2c?standard=UBL&cif=<digits>`
  (B2C), the XML as the body: `<header xmlns="mfp:anaf:dgti:spv:respUploadFisier:v1"
  ExecutionStatus="0" index_incarcare="..."/>`, or `ExecutionStatus="1"` with
  `<Errors errorMessage="..."/>` for a request it refuses (no XML, a CIF that is not digits, an
  unknown standard);
- `GET stareMesaj?id_incarcare=` : `stare="in prelucrare"` until processed, then `"ok"` or
  `"nok"` with `id_descarcare`; `"XML cu erori nepreluat de sistem"` for an XML it cannot read;
- `GET descarcare?id=` : a ZIP with the signed invoice (`<index>.xml`) or the error list, and
  ANAF's signature (`semnatura_<index>.xml`);
- `GET listaMesajeFactura?zile=1..60&cif=` : the processed messages, JSON; refused, as ANAF
  does, when they are more than one page (500);
- `GET listaMesajePaginatieFactura?startTime=<ms>&endTime=<ms>&cif=&pagina=<1..>` : the same
  messages of a time window (at most 60 days back), a page at a time (`page_size`, 500), with
  `numar_total_pagini` and ANAF's other page counts.
The lists also hold the invoices suppliers sent this CIF (`received`, `FACTURA PRIMITA`), which
are none of the client's uploads.
Every call needs `Authorization: Bearer <token>` with a token the token endpoint
(`POST /anaf-oauth2/v1/token`, grant_type refresh_token) issued and that has not expired.

Faults, set through `Simulator.faults` (or `POST /sim/faults` as JSON): `rate_limit_every` (every
n-th call answers HTTP 204, as ANAF does when its limits are reached), `limit_message_every`
(answers 200 with ANAF's limit message instead), `timeout_after_accept` (the next n uploads are
recorded, then the reply is held for `hold_seconds`, past the client's timeout), `reject`
(invoice numbers whose upload ANAF processes as `nok`, with `errors`), `expire_tokens` (every
access token issued so far stops working), `processing_polls` (how many status calls an upload
stays `in prelucrare`; a message list call stands for time passing: every upload is processed
by then). `GET /sim/uploads` lists what was uploaded, for the tests to count.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import re
import secrets
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fastapi import FastAPI, Form, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse

UPLOAD_NS = "mfp:anaf:dgti:spv:respUploadFisier:v1"
STATUS_NS = "mfp:anaf:dgti:efactura:stareMesajFactura:v1"
LIMIT_MESSAGE = "S-au facut deja 1000 descarcari de mesaje in cursul zilei"
PAGE_SIZE = 500  # messages in one list answer
TOO_MANY = (
    "Lista de mesaje este mai mare decat numarul de {size} elemente permise in pagina. "
    "Folositi endpoint-ul cu paginatie."
)
_NUMBER = re.compile(rb"<cbc:ID>([^<]+)</cbc:ID>")
_CUSTOMIZATION = b"urn:efactura.mfinante.ro:CIUS-RO:1.0.1"


@dataclass
class Upload:
    index: str
    cif: str
    b2c: bool
    xml: bytes
    received: datetime
    number: str
    state: str = "in prelucrare"  # then ok, nok, or "XML cu erori nepreluat de sistem"
    download_id: str | None = None
    errors: list[str] = field(default_factory=list)
    polls: int = 0


@dataclass
class Faults:
    rate_limit_every: int = 0
    limit_message_every: int = 0
    timeout_after_accept: int = 0
    hold_seconds: float = 0.0
    reject: dict[str, list[str]] = field(default_factory=dict)
    processing_polls: int = 0


class Simulator:
    """The API's state: uploads, messages, tokens."""

    def __init__(self, access_ttl: float = 3600.0) -> None:
        self.lock = threading.Lock()
        self.uploads: dict[str, Upload] = {}
        self.downloads: dict[str, Upload] = {}
        self.faults = Faults()
        self.access_ttl = access_ttl
        self.tokens: dict[str, float] = {}  # access token -> expiry (monotonic)
        self.refresh_tokens: set[str] = set()
        self.calls = 0
        self.limited_calls = 0  # calls answered with a rate limit
        self.page_size = PAGE_SIZE
        self.received: list[dict] = []  # invoices suppliers sent this CIF, as listed
        self.pages_listed = 0  # answers of the paged message list
        self._index = itertools.count(5_001_000_001)
        self._download = itertools.count(3_001_000_001)

    def issue_refresh_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self.refresh_tokens.add(token)
        return token

    def issue_access_token(self, ttl: float | None = None) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + (self.access_ttl if ttl is None else ttl)
        return token

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def check_token(self, authorization: str | None) -> None:
        token = (authorization or "").removeprefix("Bearer ").strip()
        if self.tokens.get(token, 0.0) <= time.monotonic():
            raise HTTPException(401, detail="invalid_token")

    def limited(self) -> Response | None:
        """The rate limit's answer to this call, if it is one to be limited."""
        with self.lock:
            self.calls += 1
            calls = self.calls
        f = self.faults
        if f.rate_limit_every and calls % f.rate_limit_every == 0:
            self.limited_calls += 1
            return Response(status_code=204)
        if f.limit_message_every and calls % f.limit_message_every == 0:
            self.limited_calls += 1
            return JSONResponse({"eroare": LIMIT_MESSAGE, "titlu": "Lista Mesaje"})
        return None

    def process(self, upload: Upload) -> None:
        """What ANAF decides once it has processed an upload."""
        if _CUSTOMIZATION not in upload.xml or not upload.number:
            upload.state, upload.errors = "XML cu erori nepreluat de sistem", ["XML invalid"]
            return
        rejected = self.faults.reject.get(upload.number)
        upload.state = "nok" if rejected is not None else "ok"
        upload.errors = list(rejected or [])
        upload.download_id = str(next(self._download))
        self.downloads[upload.download_id] = upload


def create_app(sim: Simulator | None = None) -> FastAPI:
    sim = sim or Simulator()
    app = FastAPI(title="ANAF e-Factura simulator")
    app.state.sim = sim

    def xml(body: str, status: int = 200) -> Response:
        return Response(body, status_code=status, media_type="application/xml")

    async def upload(request: Request, standard: str, cif: str, authorization, b2c: bool):
        sim.check_token(authorization)
        if limited := sim.limited():
            return limited
        data = await request.body()
        stamp = datetime.now().strftime("%Y%m%d%H%M")
        refusal = None
        if not cif.isdigit():
            refusal = f"CIF introdus= {cif} nu este un numar"
        elif standard not in ("UBL", "CN", "CII", "RASP"):
            refusal = "Valorile acceptate pentru parametrul standard sunt UBL, CN, CII sau RASP"
        elif not data.strip():
            refusal = "Nu ati atasat niciun fisier"
        if refusal:
            return xml(
                f'<header xmlns="{UPLOAD_NS}" dateResponse="{stamp}" ExecutionStatus="1">'
                f'<Errors errorMessage="{refusal}"/></header>'
            )
        found = _NUMBER.search(data)
        with sim.lock:
            entry = Upload(
                str(next(sim._index)), cif, b2c, data, datetime.now(),
                found[1].decode() if found else "",
            )  # fmt: skip
            sim.uploads[entry.index] = entry
            hold = sim.faults.timeout_after_accept > 0
            if hold:
                sim.faults.timeout_after_accept -= 1
        if hold:  # recorded at ANAF, the reply lost to the client's timeout
            await asyncio.sleep(sim.faults.hold_seconds)
        return xml(
            f'<header xmlns="{UPLOAD_NS}" dateResponse="{stamp}" ExecutionStatus="0" '
            f'index_incarcare="{entry.index}"/>'
        )

    @app.post("/{env}/FCTEL/rest/upload")
    async def upload_b2b(
        request: Request, standard: str, cif: str, authorization: str = Header(None)
    ):
        return await upload(request, standard, cif, authorization, b2c=False)

    @app.post("/{env}/FCTEL/rest/uploadb2c")
    async def upload_b2c(
        request: Request, standard: str, cif: str, authorization: str = Header(None)
    ):
        return await upload(request, standard, cif, authorization, b2c=True)

    @app.get("/{env}/FCTEL/rest/stareMesaj")
    def status(id_incarcare: str, authorization: str = Header(None)):
        sim.check_token(authorization)
        if limited := sim.limited():
            return limited
        with sim.lock:
            entry = sim.uploads.get(id_incarcare)
            if entry is None:
                return xml(
                    f'<header xmlns="{STATUS_NS}"><Errors errorMessage="Nu exista factura cu '
                    f'id_incarcare= {id_incarcare}"/></header>'
                )
            if entry.state == "in prelucrare":
                entry.polls += 1
                if entry.polls > sim.faults.processing_polls:
                    sim.process(entry)
            state, download = entry.state, entry.download_id
        extra = f' id_descarcare="{download}"' if download else ""
        return xml(f'<header xmlns="{STATUS_NS}" stare="{state}"{extra}/>')

    @app.get("/{env}/FCTEL/rest/descarcare")
    def download(id: str, authorization: str = Header(None)):  # noqa: A002 (ANAF's name)
        sim.check_token(authorization)
        if limited := sim.limited():
            return limited
        entry = sim.downloads.get(id)
        if entry is None:
            return JSONResponse({"eroare": f"Pentru id={id} nu exista inregistrata nici o factura"})
        return Response(_zip(entry), media_type="application/zip")

    def listed(cif: str, since: datetime, until: datetime) -> list[dict]:
        """The processed messages of `cif` received in [since, until], oldest first."""
        with sim.lock:
            for entry in sim.uploads.values():  # time has passed: ANAF has processed them
                if entry.state == "in prelucrare":
                    sim.process(entry)
            sent = [
                (u.received, {
                    "data_creare": u.received.strftime("%Y%m%d%H%M"), "cif": u.cif,
                    "id_solicitare": u.index,
                    "tip": "FACTURA TRIMISA" if u.state == "ok" else "ERORI FACTURA",
                    "detalii": f"Factura cu id_incarcare={u.index} emisa de cif_emitent={u.cif}",
                    "id": u.download_id})
                for u in sim.uploads.values()
                if u.cif == cif and since <= u.received <= until and u.download_id
            ]  # fmt: skip
            received = [
                (datetime.strptime(m["data_creare"], "%Y%m%d%H%M"), m) for m in sim.received
            ]
        messages = sent + [(at, m) for at, m in received if since <= at <= until]
        return [m for _, m in sorted(messages, key=lambda pair: pair[0])]

    @app.get("/{env}/FCTEL/rest/listaMesajeFactura")
    def messages(zile: int, cif: str, authorization: str = Header(None)):
        sim.check_token(authorization)
        if limited := sim.limited():
            return limited
        if not 1 <= zile <= 60:
            return JSONResponse({"eroare": "Numarul de zile trebuie sa fie intre 1 si 60"})
        now = datetime.now()
        found = listed(cif, now - timedelta(days=zile), now)
        if not found:
            return JSONResponse({"eroare": f"Nu exista mesaje in ultimele {zile} zile"})
        if len(found) > sim.page_size:
            return JSONResponse({"eroare": TOO_MANY.format(size=sim.page_size)})
        return JSONResponse(
            {"mesaje": found, "serial": "1234AA456", "cui": cif, "titlu": "Lista Mesaje"}
        )

    @app.get("/{env}/FCTEL/rest/listaMesajePaginatieFactura")
    def paged_messages(
        startTime: int, endTime: int, cif: str, pagina: int,  # noqa: N803 (ANAF's names)
        authorization: str = Header(None),
    ):  # fmt: skip
        sim.check_token(authorization)
        if limited := sim.limited():
            return limited
        since, until = (datetime.fromtimestamp(ms / 1000) for ms in (startTime, endTime))
        if until < since:
            return JSONResponse({"eroare": "endTime nu poate fi inainte de startTime"})
        if since < datetime.now() - timedelta(days=60):
            return JSONResponse({"eroare": "startTime nu poate fi mai vechi de 60 de zile"})
        found = listed(cif, since, until)
        if not found:
            return JSONResponse({"eroare": "Nu exista mesaje in intervalul selectat"})
        pages = -(-len(found) // sim.page_size)
        if not 1 <= pagina <= pages:
            return JSONResponse(
                {"eroare": f"Pagina solicitata {pagina} este mai mare decat numarul total de "
                           f"pagini {pages}"}
            )  # fmt: skip
        page = found[(pagina - 1) * sim.page_size : pagina * sim.page_size]
        sim.pages_listed += 1
        return JSONResponse({
            "mesaje": page, "numar_inregistrari_in_pagina": len(page),
            "numar_total_inregistrari_per_pagina": sim.page_size,
            "numar_total_inregistrari": len(found), "numar_total_pagini": pages,
            "index_pagina_curenta": pagina, "serial": "1234AA456", "cui": cif,
            "titlu": "Lista Mesaje",
        })  # fmt: skip

    @app.post("/anaf-oauth2/v1/token")
    def token(grant_type: str = Form(...), refresh_token: str = Form(None)):
        if grant_type != "refresh_token" or refresh_token not in sim.refresh_tokens:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        sim.refresh_tokens.discard(refresh_token)
        return {
            "access_token": sim.issue_access_token(), "token_type": "Bearer",
            "expires_in": int(sim.access_ttl), "refresh_token": sim.issue_refresh_token(),
        }  # fmt: skip

    @app.post("/sim/faults")
    async def set_faults(request: Request):
        for name, value in (await request.json()).items():
            if name == "expire_tokens":
                sim.expire_tokens()
            else:
                setattr(sim.faults, name, value)
        return {"ok": True}

    @app.get("/sim/uploads")
    def list_uploads():
        return [{"index": u.index, "number": u.number, "b2c": u.b2c, "state": u.state}
                for u in sim.uploads.values()]  # fmt: skip

    return app


def _zip(entry: Upload) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        if entry.state == "ok":
            archive.writestr(f"{entry.index}.xml", entry.xml)
        else:
            errors = "".join(f'<Error errorMessage="{e}"/>' for e in entry.errors)
            archive.writestr(
                f"{entry.index}.xml",
                f'<header xmlns="mfp:anaf:dgti:efactura:mesajEroriFactuta:v1" '
                f'Index_incarcare="{entry.index}" Cif_emitent="{entry.cif}">{errors}</header>',
            )
        archive.writestr(
            f"semnatura_{entry.index}.xml",
            f'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo/>'
            f"<SignatureValue>{secrets.token_hex(32)}</SignatureValue></Signature>",
        )
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args(argv)
    sim = Simulator()
    refresh = sim.issue_refresh_token()
    print(f"INVOICES_EFACTURA_URL=http://127.0.0.1:{args.port}/test/FCTEL/rest")
    print(f"INVOICES_EFACTURA_TOKEN_URL=http://127.0.0.1:{args.port}/anaf-oauth2/v1/token")
    print(f"INVOICES_EFACTURA_REFRESH_TOKEN={refresh}")
    uvicorn.run(create_app(sim), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()


class Running:
    """The simulator served by uvicorn on 127.0.0.1 in a thread (real HTTP), for a test."""

    def __init__(self, sim: Simulator | None = None) -> None:
        import socket

        import uvicorn

        self.sim = sim or Simulator()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(create_app(self.sim), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="off")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/test/FCTEL/rest"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/anaf-oauth2/v1/token"

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the ANAF simulator did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
