from pathlib import Path

import pytest

from helpdesk.corpus import Document, load_corpus, parse_document
from helpdesk.retrieval import RetrievalConfig, Retriever, chunk_documents


def doc(doc_id: str, body: str, title: str = "T") -> Document:
    return Document(doc_id, title, "t", "global", "current", "2025-01-01", body)


def test_chunks_respect_size_and_overlap():
    words = " ".join(f"w{i}" for i in range(100))
    chunks = chunk_documents([doc("d", words)], RetrievalConfig(chunk_size=40, chunk_overlap=10))
    assert [c.chunk_id for c in chunks] == ["d#0", "d#1", "d#2"]
    assert chunks[1].text.split()[0] == "w30"  # starts 30 words in: 10 words shared with the first chunk
    assert chunks[-1].text.split()[-1] == "w99"  # nothing lost at the end


def test_title_prefix_is_optional():
    config = RetrievalConfig(chunk_size=5, title_in_chunks=True)
    assert chunk_documents([doc("d", "a b c", title="VPN guide")], config)[0].text == "VPN guide: a b c"


def test_search_ranks_the_matching_document_first():
    docs = [doc("vpn", "Install the NorthGate client to connect to the VPN from home."),
            doc("leave", "Employees receive 27 days of annual leave every year."),
            doc("printer", "Printers on every floor accept badge release printing.")]
    hits = Retriever(docs, RetrievalConfig(chunk_size=50, top_k=2)).search("how many days of annual leave")
    assert hits[0].doc_id == "leave" and hits[0].score > 0
    assert all(h.doc_id != "vpn" for h in hits)  # no shared words, no hit


def test_config_rejects_unknown_and_inconsistent_settings(tmp_path: Path):
    (tmp_path / "r.yaml").write_text("chunk_size: 40\ntopk: 3\n")
    with pytest.raises(ValueError, match="unknown retrieval settings"):
        RetrievalConfig.load(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text("chunk_size: 40\nchunk_overlap: 40\n")
    with pytest.raises(ValueError, match="chunk_overlap"):
        RetrievalConfig.load(tmp_path / "r.yaml")


def test_bundled_corpus_parses(helpdesk_root: Path):
    documents = load_corpus(helpdesk_root / "corpus")
    assert len(documents) >= 150
    assert len({d.doc_id for d in documents}) == len(documents)
    assert {d.status for d in documents} == {"current", "superseded"}


def test_document_without_front_matter_is_refused(tmp_path: Path):
    (tmp_path / "x.md").write_text("# no front matter\n")
    with pytest.raises(ValueError, match="front matter"):
        parse_document(tmp_path / "x.md")
