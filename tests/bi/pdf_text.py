"""The text of a PDF that chromium (Skia) printed, for tests; pypdf is not installed.

Skia embeds subset fonts and writes glyph ids (``<0012003A> Tj``); each font's ``/ToUnicode``
CMap maps them back to characters. This reads just that much of the format: objects, Flate
streams, ToUnicode CMaps, ``Tf`` and ``Tj``/``TJ`` in content streams, and the Info title.
"""

from __future__ import annotations

import re
import zlib

_OBJ = re.compile(rb"(\d+) 0 obj\s*(.*?)\s*endobj", re.S)
_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)


def _objects(pdf: bytes) -> dict[int, bytes]:
    return {int(m.group(1)): m.group(2) for m in _OBJ.finditer(pdf)}


def _stream(body: bytes) -> bytes | None:
    m = _STREAM.search(body)
    if not m:
        return None
    raw = m.group(1)
    if b"/FlateDecode" in body[: m.start()]:
        try:
            return zlib.decompress(raw)
        except zlib.error:
            return None
    return raw


def _cmap(text: bytes) -> dict[int, str]:
    table: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", text, re.S):
        for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            table[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", text, re.S):
        for lo, hi, dst in re.findall(
                rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            start = int(dst, 16)
            for i, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                table[code] = chr(start + i)
    return table


def pdf_text(pdf: bytes) -> str:
    """The text drawn on the pages, in drawing order; runs of text separated by spaces."""
    objects = _objects(pdf)
    fonts: dict[bytes, dict[int, str]] = {}
    for body in objects.values():
        for name, num in re.findall(rb"/(F\d+) (\d+) 0 R", body):
            font = objects.get(int(num), b"")
            ref = re.search(rb"/ToUnicode (\d+) 0 R", font)
            if ref:
                fonts[name] = _cmap(_stream(objects.get(int(ref.group(1)), b"")) or b"")
    parts: list[str] = []
    for body in objects.values():
        if b"/ToUnicode" in body or b"/Length1" in body:
            continue
        content = _stream(body)
        if not content or b"Tf" not in content:
            continue
        current: dict[int, str] = {}
        for m in re.finditer(rb"/(F\d+) [\d.]+ Tf|<([0-9A-Fa-f]*)> ?Tj|\[(.*?)\] ?TJ|(ET)",
                             content, re.S):
            if m.group(1):
                current = fonts.get(m.group(1), {})
            elif m.group(2) is not None or m.group(3) is not None:
                hexes = [m.group(2)] if m.group(2) is not None else re.findall(
                    rb"<([0-9A-Fa-f]*)>", m.group(3))
                for h in hexes:
                    codes = [int(h[i:i + 4], 16) for i in range(0, len(h), 4)]
                    parts.append("".join(current.get(c, "") for c in codes))
            else:
                parts.append(" ")
    return re.sub(r"\s+", " ", "".join(parts))


def pdf_title(pdf: bytes) -> str:
    """The document's title from its Info dictionary (chromium copies the page's <title>)."""
    m = re.search(rb"/Title\s*(<FEFF[0-9A-Fa-f]*>|\((?:\\.|[^\\)])*\))", pdf)
    if not m:
        return ""
    raw = m.group(1)
    if raw.startswith(b"<"):
        return bytes.fromhex(raw[1:-1].decode()).decode("utf-16-be").lstrip("\ufeff")
    return raw[1:-1].decode("latin-1")


def pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf))
