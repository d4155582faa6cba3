"""Walking a plain multipart tree in one streaming pass, to enforce the limits.

A stack of active boundaries: a delimiter of an outer boundary also ends every
part nested inside it (real mail often omits inner close delimiters), so one
pass over the body finds every part at every depth.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from .limits import Limits, Malformed, TooComplex
from .mime import (
    MAX_DELIMITER_LINE,
    Cursor,
    boundary_of,
    content_type_of,
    delimiter_token,
    read_header_block,
)


def walk_multipart(cur: Cursor, body_start: int, boundary: bytes, where: str, depth: int,
                   limits: Limits, count_parts: Callable[[int, str], None]) -> None:
    """Check the multipart body at ``body_start``; raise Malformed or TooComplex."""
    stack: list[tuple[bytes, str, int]] = [(boundary, where, 0)]  # boundary, path, parts so far
    pos = body_start
    while stack:
        if pos == cur.start and cur.get(pos, 2) == b"--":  # elsewhere a line start follows "\n"
            line, after = cur.line(pos, MAX_DELIMITER_LINE)
            level, close = _match(stack, line)
            pos = after
            if level is None:
                continue
        else:
            # One regular expression for the active delimiters: rejecting "--" lines that
            # are not delimiters in C keeps a body of "--x" lines from costing seconds per MB.
            m = cur.search(_delimiters(tuple(b for b, _, _ in stack)), max(pos - 1, cur.start),
                           MAX_DELIMITER_LINE)
            if m is None:
                break  # missing close delimiters are tolerated
            level, close = _match(stack, b"--" + m.group(1) + (m.group(2) or b""))
            pos = cur.base + m.end()
            if level is None:
                continue
        del stack[level + 1:]
        if close:
            stack.pop()
            continue
        bnd, path, count = stack[level]
        stack[level] = (bnd, path, count + 1)
        part = f"{path}.{count + 1}"
        count_parts(1, part)
        head = read_header_block(cur, pos, limits, part)
        if head.problems:
            raise Malformed(head.problems[0])
        types = head.get("Content-Type")
        ct = content_type_of(types[0] if types else None)
        if ct.type.startswith("multipart/"):
            if depth + len(stack) >= limits.max_depth:
                raise TooComplex(f"part {part}: MIME nesting deeper than {limits.max_depth}")
            stack.append((boundary_of(ct, part), part, 0))
        pos = head.body_start
    if stack and stack[0][2] == 0:
        raise Malformed(f"part {where}: multipart body without any delimiter line")


@functools.lru_cache(maxsize=64)
def _delimiters(boundaries: tuple[bytes, ...]) -> re.Pattern[bytes]:
    alternatives = b"|".join(re.escape(b) for b in sorted(set(boundaries), key=len, reverse=True))
    return re.compile(rb"\n--(" + alternatives + rb")(--)?[ \t]*\r?\n")


def _match(stack: list[tuple[bytes, str, int]], line: bytes | None) -> tuple[int | None, bool]:
    token = delimiter_token(line)
    if token is None or not token.startswith(b"--"):
        return None, False
    for level in range(len(stack) - 1, -1, -1):
        dash = b"--" + stack[level][0]
        if token == dash:
            return level, False
        if token == dash + b"--":
            return level, True
    return None, False
