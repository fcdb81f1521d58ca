"""A griffe extension for the API reference: reStructuredText ``::`` literal blocks.

Docstrings here end a sentence with ``::`` before an indented example, as reStructuredText
does. The Google-style parser takes ``Example::`` for a section title and prints the colons
verbatim; this turns each ``::`` that opens a literal block into a plain sentence ending in
``:`` followed by a fenced Python block, so the page shows code, not markup.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe


def convert(text: str) -> str:
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^([ \t]*)(.*?)::[ \t]*\n$", line)
        if not m or i + 1 >= len(lines) or lines[i + 1].strip():
            out.append(line)
            i += 1
            continue
        indent, lead = m.group(1), m.group(2)
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        body: list[str] = []
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > len(indent)
        ):
            body.append(lines[j])
            j += 1
        while body and not body[-1].strip():
            body.pop()
        if not body:
            out.append(line)
            i += 1
            continue
        if lead.strip().lower() in ("example", "examples"):
            lead = "For example"
        code = textwrap.dedent("".join(body)).rstrip("\n")
        out.append(f"{indent}{lead}:\n\n{indent}```python\n")
        out.extend(f"{indent}{c}\n" if c else "\n" for c in code.split("\n"))
        out.append(f"{indent}```\n\n")
        i = j
    return "".join(out)


class RSTLiterals(griffe.Extension):
    """Rewrite ``::`` literal blocks of every docstring before it is parsed."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        doc = obj.docstring
        if doc is not None and "::" in doc.value:
            doc.value = convert(doc.value)
