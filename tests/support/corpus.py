"""A small corpus of mixed formats whose facts tests can ask about.

Each file holds facts found nowhere else, so a citation can be checked: the
pallet count sits on page 2 of the PDF only.
"""

from __future__ import annotations

from pathlib import Path

HANDBOOK_MD = """# Employee Handbook

Welcome to Northwind. This handbook explains how we work.

## Leave

Employees receive 27 days of paid leave per year. Unused leave carries over until March.

## Expenses

Travel expenses must be filed within 30 days using form EX-7. Receipts are scanned, not posted.
"""

FAQ_HTML = """<!doctype html>
<html><head><title>IT FAQ</title><style>body { color: red; }</style></head>
<body>
<nav>Home | Search</nav>
<h1>IT FAQ</h1>
<h2>VPN</h2>
<p>Connect to the VPN with the WireGuard client using the profile vpn.northwind.lan.</p>
<h2>Printers</h2>
<p>The printer on floor three is named <b>Gutenberg</b> and prints double-sided by default.</p>
<script>console.log("not text")</script>
</body></html>
"""

HOURS_TXT = """Office hours are 8:00 to 17:00, Monday to Friday.

The cafeteria serves lunch from 11:30 to 14:00.
"""

PDF_PAGES = [
    "Northwind Logistics annual report. This report covers the financial year and the state of our sites. "
    "Revenue grew in every region.",
    "Warehouses. The Rotterdam warehouse stores 48000 pallets and opened in March 2019. It runs three shifts a day.",
]


def pdf_bytes(pages: list[str], *, password: str | None = None) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    if password:
        pdf.set_encryption(owner_password=password + "-owner", user_password=password)
    return bytes(pdf.output())


def write_corpus(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "handbook.md": HANDBOOK_MD.encode(),
        "faq.html": FAQ_HTML.encode(),
        "hours.txt": HOURS_TXT.encode(),
        "report.pdf": pdf_bytes(PDF_PAGES),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths
