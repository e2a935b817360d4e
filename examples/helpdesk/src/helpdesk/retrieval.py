"""BM25 retrieval over word-window chunks of the corpus, configured by config/retrieval.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bm25s
import yaml

from helpdesk.corpus import Document
from helpdesk.text import tokenize


@dataclass(frozen=True)
class RetrievalConfig:
    chunk_size: int = 40
    chunk_overlap: int = 0
    top_k: int = 2
    bm25_k1: float = 1.5
    bm25_b: float = 0.75
    title_in_chunks: bool = False
    remove_stopwords: bool = False

    @classmethod
    def load(cls, path: Path) -> "RetrievalConfig":
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown retrieval settings {sorted(unknown)}")
        config = cls(**values)
        if config.chunk_size < 1 or not 0 <= config.chunk_overlap < config.chunk_size or config.top_k < 1:
            raise ValueError(f"{path}: need chunk_size >= 1, 0 <= chunk_overlap < chunk_size, top_k >= 1")
        return config


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    text: str
    metadata: dict[str, str]  # the document's title, status and effective date, logged with every hit


@dataclass(frozen=True)
class Hit:
    doc_id: str
    chunk_id: str
    score: float
    text: str
    metadata: dict[str, str]


def chunk_documents(documents: list[Document], config: RetrievalConfig) -> list[Chunk]:
    chunks: list[Chunk] = []
    step = config.chunk_size - config.chunk_overlap
    for doc in documents:
        words = doc.body.split()
        for n, start in enumerate(range(0, max(len(words), 1), step)):
            window = " ".join(words[start:start + config.chunk_size])
            if not window:
                break
            text = f"{doc.title}: {window}" if config.title_in_chunks else window
            metadata = {"title": doc.title, "status": doc.status, "effective": doc.effective}
            chunks.append(Chunk(chunk_id=f"{doc.doc_id}#{n}", doc_id=doc.doc_id, text=text, metadata=metadata))
            if start + config.chunk_size >= len(words):
                break
    return chunks


class Retriever:
    def __init__(self, documents: list[Document], config: RetrievalConfig) -> None:
        self.config = config
        self.chunks = chunk_documents(documents, config)
        self._index = bm25s.BM25(k1=config.bm25_k1, b=config.bm25_b)
        self._index.index([tokenize(c.text, config.remove_stopwords) for c in self.chunks], show_progress=False)

    def search(self, query: str, top_k: int | None = None) -> list[Hit]:
        k = min(top_k or self.config.top_k, len(self.chunks))
        tokens = tokenize(query, self.config.remove_stopwords)
        if not tokens:
            return []
        ids, scores = self._index.retrieve([tokens], k=k, show_progress=False)
        hits = []
        for idx, score in zip(ids[0], scores[0]):
            if score <= 0:
                continue
            chunk = self.chunks[int(idx)]
            hits.append(Hit(doc_id=chunk.doc_id, chunk_id=chunk.chunk_id, score=round(float(score), 4), text=chunk.text,
                            metadata=chunk.metadata))
        return hits
