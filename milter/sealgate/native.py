"""Which of sealgate's modules run compiled, and whether a compiled one is out of date.

The verdict path -- the message walk (``sealgate.smime``: MIME, base64,
BER/DER, CMS, digests, signature checks), the facts and the policy rules --
is plain, fully typed Python. ``make native`` compiles the modules listed in
``native.txt`` with mypyc (part of mypy) into C extension modules beside the
sources; Python then imports those instead, with the same behaviour, and the
10 KB verdict costs about 45% less CPU (``bench.check_rate``).
``make test``, ``make demo`` and ``make bench`` compile first. Without a C
compiler the sources run as they are.

A compiled module shadows its source: one built before the source changed
would run old code. :func:`stale` lists those; the test suite refuses to run
with any (``tests/conftest.py``), and ``make native`` rebuilds them.

    python -m sealgate.native      # what runs compiled, what is stale
"""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the source root, milter/
LIST = Path(__file__).with_name("native.txt")
SOURCES = tuple(ROOT / line.strip()
                for line in (LIST.read_text().splitlines() if LIST.exists() else ())
                if line.strip() and not line.startswith("#"))


def _compiled(source: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_name(source.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def _module(source: Path) -> str:
    parts = source.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def compiled() -> list[str]:
    """The listed modules that have a compiled build next to their source."""
    return [_module(s) for s in SOURCES if _compiled(s) is not None]


def stale() -> list[str]:
    """Compiled modules older than their source, and sources with no build beside built ones."""
    built = {s: _compiled(s) for s in SOURCES}
    if not any(built.values()):
        return []  # nothing compiled: the sources run as they are
    out = []
    for source, binary in built.items():
        if binary is None:
            out.append(f"{_module(source)} (not compiled)")
        elif binary.stat().st_mtime < source.stat().st_mtime:
            out.append(f"{_module(source)} (changed since {binary.name} was built)")
    return out


def describe() -> str:
    names = compiled()
    if not names:
        return "pure Python (`make native` compiles the verdict path)"
    problems = stale()
    text = f"{len(names)} of {len(SOURCES)} verdict-path modules compiled (mypyc)"
    return text + (f"; STALE: {', '.join(problems)}" if problems else "")


if __name__ == "__main__":
    print(describe())
    sys.exit(1 if stale() else 0)
