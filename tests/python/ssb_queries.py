"""The 13 SSB queries of ../ssb_queries.sql (tests/src/corpus.rs reads the same file)."""

import os

QUERIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ssb_queries.sql")


def load_queries(path):
    """[(name, sql)] from the file: a `-- Qx.y` line names the statement that follows it."""
    queries, name, text = [], None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            stripped = line.strip()
            if stripped.startswith("--"):
                label = stripped[2:].strip()
                if label.startswith("Q") and " " not in label:
                    name = label
                continue
            if not stripped:
                continue
            text.append(stripped)
            if stripped.endswith(";"):
                if name is None:
                    raise SystemExit(f"statement without a '-- Qx.y' label in {path}")
                queries.append((name, " ".join(text).rstrip(";").strip()))
                name, text = None, []
    return queries
