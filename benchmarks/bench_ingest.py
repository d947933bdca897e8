"""Ingestion figures: 1,000 markdown files and 200 web pages, with the real embedding model.

Run from the repository root (a few minutes)::

    python -m benchmarks.bench_ingest
    python -m benchmarks.bench_ingest --files 200 --pages 50     # quicker

Files: documents/s and chunks/s of ``ingest_path`` into a fresh SQLite memory, against the
embedding model's own throughput on exactly the same chunk texts (all-MiniLM-L6-v2, all of
them in one call, its fastest; the better of a run before the ingestion and one after): the
target is >= 90% of it. A second pass over the unchanged files
shows the cost of skipping by hash. Web: ``ingest_urls`` over pages served by a local HTTP
server (fetch, extraction, chunking, embedding, storing), pages/s.

The documents are synthetic: sections of sentences drawn from the benchmark corpus vocabulary,
2-4 KB each, so a file makes 2-4 chunks.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.bench_core import Corpus
from stellar_core import SentenceTransformerEmbedder, Settings, StellarMemory, ingest_path
from stellar_core.connectors.chunking import chunk_markdown
from stellar_core.connectors.files import read_text
from stellar_core.connectors.web import ingest_urls


def documents(n: int, seed: int = 7) -> list[str]:
    corpus, rng = Corpus(seed), random.Random(seed)
    docs = []
    for i in range(n):
        parts = [f"# Note {i}: {corpus._sentence()[:-1]}"]
        for s in range(rng.randint(2, 4)):
            parts.append(f"## Section {s + 1}")
            parts.append(" ".join(corpus._sentence() for _ in range(rng.randint(5, 9))))
        docs.append("\n\n".join(parts) + "\n")
    return docs


def bench_files(n: int, tmp: Path, model: SentenceTransformerEmbedder) -> None:
    root = tmp / "files"
    root.mkdir()
    for i, text in enumerate(documents(n)):
        (root / f"note-{i:04d}.md").write_text(text)
    chunks = [c for p in sorted(root.iterdir()) for c in chunk_markdown(read_text(p)[0] or "")]

    def model_alone() -> float:
        """The model's best: every chunk in one call (it sorts them by length and batches)."""
        started = time.perf_counter()
        model.embed(chunks)
        return len(chunks) / (time.perf_counter() - started)

    before = model_alone()
    with StellarMemory(tmp / "mem", embedder=model, background=False) as mem:
        started = time.perf_counter()
        result = ingest_path(mem, root)
        took = time.perf_counter() - started
        started = time.perf_counter()
        again = ingest_path(mem, root)
        took_again = time.perf_counter() - started
    model_rate = max(before, model_alone())  # the better of a run before and one after
    rate = result.chunks / took
    print(f"files: {result.sources:,} markdown files -> {result.chunks:,} chunks in {took:.1f} s")
    print(f"  documents/s                       {result.sources / took:8.1f}")
    print(f"  chunks/s                          {rate:8.1f}")
    print(f"  the model alone, same chunks/s    {model_rate:8.1f}   (best of a run before and after)")
    verdict = "ok" if rate >= 0.9 * model_rate else "MISS"
    print(f"  ingestion / model                 {rate / model_rate:8.1%}   {verdict} (target >= 90%)")
    print(f"  again, all unchanged (s)          {took_again:8.2f}   ({again.unchanged:,} skipped by hash)")


@contextlib.contextmanager
def site(pages: dict[str, bytes]) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def bench_web(n: int, tmp: Path, model: SentenceTransformerEmbedder) -> None:
    pages = {}
    for i, text in enumerate(documents(n, seed=11)):
        sections = text.split("\n\n")
        body = "".join(f"<h2>{p[3:]}</h2>" if p.startswith("## ") else f"<p>{p}</p>" for p in sections[1:])
        html = (
            f"<html><head><title>{sections[0][2:]}</title></head><body><nav>Home | About</nav>"
            f"<article><h1>{sections[0][2:]}</h1>{body}</article><footer>(c) 2026</footer></body></html>"
        )
        pages[f"/page/{i}"] = html.encode()
    settings = Settings(web_allow_hosts=["127.0.0.1"])
    with (
        site(pages) as base,
        StellarMemory(tmp / "web", embedder=model, settings=settings, background=False) as mem,
    ):
        started = time.perf_counter()
        result = ingest_urls(mem, [f"{base}{p}" for p in pages])
        took = time.perf_counter() - started
    print(f"web: {n} pages from a local server -> {result.chunks:,} chunks in {took:.1f} s")
    print(f"  pages/s                           {result.sources / took:8.1f}")
    print(f"  chunks/s                          {result.chunks / took:8.1f}")
    print(f"  failed                            {len(result.skipped):8d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000)
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args()
    model = SentenceTransformerEmbedder()
    model.embed(["warm-up"])
    with tempfile.TemporaryDirectory(prefix="stellar-ingest-") as tmp:
        bench_files(args.files, Path(tmp), model)
        bench_web(args.pages, Path(tmp), model)


if __name__ == "__main__":
    main()
