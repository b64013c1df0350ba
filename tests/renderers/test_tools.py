"""The sample-page script and the render benchmark run and say what they measured."""

from __future__ import annotations

import pypdf

from renderers import bench, sample_page


def test_the_sample_page_script_writes_a_one_page_pdf(tmp_path):
    out = tmp_path / "sample.pdf"
    sample_page.main([str(out), "--language", "en"])
    reader = pypdf.PdfReader(out)
    assert len(reader.pages) == 1
    assert "INVOICE (FACTURĂ)" in reader.pages[0].extract_text()


def test_bench_rows_measure_the_invoice_against_the_floor():
    rows = bench.bench_rows(seconds=0.05)
    labels = [label for label, _, _ in rows]
    assert labels[0].startswith("PDF render, reference invoice")
    assert "invoices/s" in rows[0][1]
    assert rows[1][1].endswith("KB")
    assert labels[2].startswith("floor")
    assert labels[3].startswith("WeasyPrint")
    assert all(len(row) == 3 and all(isinstance(cell, str) for cell in row) for row in rows)


def test_the_weasyprint_template_carries_the_same_content():
    from renderers.sample_page import sample_invoice
    from renderers.supplier import load_supplier

    html = bench.invoice_html(sample_invoice(), load_supplier())
    for expected in ("OR00012345", "239,95 lei", "Ștefănescu", "0,0450", "Scutit de TVA"):
        assert expected in html
