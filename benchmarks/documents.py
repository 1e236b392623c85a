"""Documents benchmark: parse speed, word recall and memory per format, ours against
LlamaIndex's ``SimpleDirectoryReader`` and ``unstructured`` (fast strategy) in the same run
on the same files; then end-to-end ingestion against embed-only throughput.

Every parser runs in a child process of its own (one at a time), so each gets the machine
alone and its peak memory (max RSS) is its own. Word recall is counted per word against
``pdftotext -layout`` (poppler-utils): the reference's words, with multiplicity, found in
the parser's text; words glued together count as lost.

The anchors live in a venv of their own (never in CI)::

    python3 -m venv .venv-bench
    .venv-bench/bin/python -m pip install llama-index-core llama-index-readers-file pypdf \\
        unstructured pdfminer.six pdf2image pi_heif pikepdf pillow opencv-python-headless scipy \\
        onnxruntime huggingface_hub onnx matplotlib spacy
    .venv-bench/bin/python -m pip install --no-deps unstructured-inference

(``unstructured[pdf]`` would pull unstructured-inference's torch and layout models, which the
fast strategy does not use; the list above is what its fast path imports. Offline, it cannot
download the spaCy model it loads at first use: the script gives it spaCy's blank English
pipeline with a sentencizer instead, which only speeds it up.)

Usage::

    .venv/bin/python benchmarks/documents.py --files DIR [--bench-python .venv-bench/bin/python] \\
        [--model .cache/e5-bench-256x4] [--out results.json] [--skip-e2e]

``--files``: a folder of documents (PDF manuals, say); files of formats without a reader
are left out. The end-to-end part builds a random model of hidden size 256 and 4 layers
(``--model``) and ingests into a throwaway embedded Chroma on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: The child-process programs, one per parser: read ``argv[1:]`` files, leave
#: ``out = {"seconds": ..., "texts": {path: text}, "errors": {path: message}}``; _TRAILER prints it
#: with the process's peak RSS (its own, or its largest child's: a parse worker's).
_OURS = r"""
import json, sys, time
from pathlib import Path
from e5_integrations.ingest._parsing import parse_file
from e5_integrations.ingest._readers import Document, Fields, SourceFile, reader_for
texts, errors = {}, {}
start = time.perf_counter()
for name in sys.argv[1:]:
    source = SourceFile(Path(name), name)
    parsed = parse_file(reader_for(source), source, Fields("text", None))
    if parsed.error:
        errors[name] = parsed.error
    texts[name] = "".join(item.text for _, item in parsed.items if isinstance(item, Document))
out = {"seconds": time.perf_counter() - start, "texts": texts, "errors": errors}
"""

_OURS_POOL = r"""
import json, sys, time
from pathlib import Path
from e5_integrations.ingest import iter_documents
from e5_integrations.ingest._parsing import ParsePool
texts = {}
start = time.perf_counter()
with ParsePool(int(sys.argv[1]), 600) as pool:
    for document in iter_documents(sys.argv[2:], pool=pool, on_error="skip"):
        texts[document.source] = document.text
out = {"seconds": time.perf_counter() - start, "texts": texts, "errors": {}}
"""

_LLAMA = r"""
import json, sys, time
from llama_index.core import SimpleDirectoryReader
texts, errors = {}, {}
start = time.perf_counter()
for name in sys.argv[1:]:
    try:
        documents = SimpleDirectoryReader(input_files=[name]).load_data()
        texts[name] = "\n".join(document.text for document in documents)
    except Exception as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"
out = {"seconds": time.perf_counter() - start, "texts": texts, "errors": errors}
"""

_UNSTRUCTURED = r"""
import json, os, sys, time
os.environ["UNSTRUCTURED_DISABLE_NOTICE"] = "1"
import spacy
import unstructured.nlp.tokenize
def _offline_pipeline():  # the model it downloads at first use, offline: spaCy's blank English
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp
unstructured.nlp.tokenize._load_spacy_model = _offline_pipeline
from unstructured.partition.auto import partition
texts, errors = {}, {}
start = time.perf_counter()
for name in sys.argv[1:]:
    try:
        elements = partition(filename=name, strategy="fast", languages=["eng"])
        texts[name] = "\n\n".join(str(element) for element in elements)
    except Exception as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"
out = {"seconds": time.perf_counter() - start, "texts": texts, "errors": errors}
"""


_TRAILER = r"""
import json as _json, resource as _resource
out["peak_rss_mib"] = round(max(_resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss,
                                _resource.getrusage(_resource.RUSAGE_CHILDREN).ru_maxrss) / 1024, 1)
print(_json.dumps(out))
"""


def _words(text: str) -> Counter[str]:
    return Counter(re.findall(r"\w+", text.lower()))


def recall(reference: str, text: str) -> tuple[int, int]:
    """``(found, total)``: the reference's words (with multiplicity) found in ``text``."""
    wanted, got = _words(reference), _words(text)
    return sum(min(count, got[word]) for word, count in wanted.items()), sum(wanted.values())


def pdf_pages(path: Path) -> int:
    import pypdfium2

    document = pypdfium2.PdfDocument(str(path))
    try:
        return len(document)
    finally:
        document.close()


def reference_text(path: Path) -> str | None:
    """``pdftotext -layout`` of a PDF, or None without poppler-utils."""
    if path.suffix.lower() != ".pdf" or shutil.which("pdftotext") is None:
        return None
    done = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def run_child(
    python: str, program: str, args: list[str], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``program`` in a fresh interpreter; its JSON result (with its peak RSS, MiB)."""
    started = time.perf_counter()
    done = subprocess.run(
        [python, "-c", program + _TRAILER, *args],
        capture_output=True,
        text=True,
        check=False,
        env=env or dict(os.environ),
    )
    if done.returncode != 0:
        return {"failed": done.stderr[-2000:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    return result


def summarise(
    name: str, result: dict[str, Any], files: list[Path], pages: dict[Path, int], refs: dict[Path, str]
) -> dict[str, Any]:
    if "failed" in result:
        return {"parser": name, "failed": result["failed"]}
    texts = result["texts"]
    by_format: dict[str, dict[str, Any]] = {}
    for path in files:
        entry = by_format.setdefault(path.suffix.lower(), {"files": 0, "pages": 0, "found": 0, "total": 0})
        entry["files"] += 1
        entry["pages"] += pages.get(path, 0)
        if path in refs:
            found, total = recall(refs[path], texts.get(str(path), ""))
            entry["found"] += found
            entry["total"] += total
    seconds = result["seconds"]
    formats = {
        suffix: {
            "files": entry["files"],
            "pages": entry["pages"],
            "word_recall": round(entry["found"] / entry["total"], 4) if entry["total"] else None,
        }
        for suffix, entry in by_format.items()
    }
    all_pages = sum(pages.values())
    return {
        "parser": name,
        "seconds": round(seconds, 2),
        "files_per_s": round(len(files) / seconds, 2),
        "pages_per_s": round(all_pages / seconds, 1) if all_pages else None,
        "peak_rss_mib": result.get("peak_rss_mib"),
        "errors": len(result.get("errors", {})),
        "formats": formats,
    }


def end_to_end(files_dir: Path, model: Path) -> dict[str, Any]:
    """Ingest ``files_dir`` into a throwaway Chroma, against embedding the same chunks only."""
    import torch

    from e5_integrations import E5Encoder
    from e5_integrations.ingest import iter_documents, open_sink
    from e5_integrations.ingest._chunking import Chunker
    from e5_integrations.ingest._pipeline import ingest, prepare_chunks
    from e5_integrations.testing import TinyModelSpec, build_tiny_model

    build_tiny_model(model, TinyModelSpec(hidden_size=256, intermediate_size=512, num_hidden_layers=4))
    torch.manual_seed(0)
    encoder = E5Encoder(str(model), device="cpu", dtype="fp32", max_length=512, show_progress=False)
    chunker = Chunker(encoder.tokenizer, max_length=encoder.max_length)
    texts = [
        chunk.text
        for document in iter_documents([files_dir], on_error="skip")
        for chunk in prepare_chunks(document, chunker, encoder.model_name, encoder.max_length)
    ]
    encoder.encode_documents(texts[:8])  # warm up
    started = time.perf_counter()
    encoder.encode_documents(texts)
    embed_only = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as store:
        sink = open_sink("chroma", store, "bench")
        try:
            started = time.perf_counter()
            report = ingest(files_dir, sink, encoder, on_error="skip")
            whole = time.perf_counter() - started
        finally:
            sink.close()
    return {
        "chunks": len(texts),
        "embed_only_seconds": round(embed_only, 2),
        "end_to_end_seconds": round(whole, 2),
        "end_to_end_over_embed_only": round(embed_only / whole, 3),
        "report_chunks": report.chunks,
        "tokens_embedded": report.tokens_embedded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=Path, required=True, help="folder of documents")
    parser.add_argument("--bench-python", help="python of the venv with llama-index and unstructured")
    parser.add_argument("--model", type=Path, default=Path(".cache/e5-bench-256x4"))
    parser.add_argument("--pool-workers", type=int, default=2)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from e5_integrations.ingest._readers import READERS

    files = sorted(
        path for path in args.files.rglob("*") if path.is_file() and path.suffix.lower() in READERS
    )
    if not files:
        raise SystemExit(f"no readable documents in {args.files}")
    pages = {path: pdf_pages(path) for path in files if path.suffix.lower() == ".pdf"}
    refs = {path: text for path in files if (text := reference_text(path)) is not None}
    names = [str(path) for path in files]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    results = [
        summarise(
            "e5-integrations (1 process)", run_child(sys.executable, _OURS, names, env), files, pages, refs
        ),
        summarise(
            f"e5-integrations (ParsePool, {args.pool_workers} workers)",
            run_child(sys.executable, _OURS_POOL, [str(args.pool_workers), *names], env),
            files,
            pages,
            refs,
        ),
    ]
    if args.bench_python:
        results.append(
            summarise(
                "llama-index SimpleDirectoryReader",
                run_child(args.bench_python, _LLAMA, names),
                files,
                pages,
                refs,
            )
        )
        results.append(
            summarise(
                "unstructured (fast)", run_child(args.bench_python, _UNSTRUCTURED, names), files, pages, refs
            )
        )
    output: dict[str, Any] = {
        "files": len(files),
        "pages": sum(pages.values()),
        "cpus": os.cpu_count(),
        "parse": results,
    }
    for row in results:
        print(json.dumps(row), flush=True)
    if not args.skip_e2e:
        output["end_to_end"] = end_to_end(args.files, args.model)
        print(json.dumps(output["end_to_end"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(output, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
