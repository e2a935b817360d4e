"""The policy corpus: markdown documents with a YAML front matter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    topic: str
    region: str
    status: str
    effective: str
    body: str


def parse_document(path: Path) -> Document:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise ValueError(f"{path}: missing front matter")
    _, front, body = text.split("---", 2)
    meta = yaml.safe_load(front)
    return Document(
        doc_id=meta["id"], title=meta["title"], topic=meta.get("topic", ""),
        region=meta.get("region", "global"), status=meta.get("status", "current"),
        effective=str(meta.get("effective", "")), body=body.strip(),
    )


def load_corpus(folder: Path) -> list[Document]:
    return [parse_document(p) for p in sorted(folder.glob("*.md"))]
