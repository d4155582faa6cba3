"""A sealgate.toml for throwaway gateways: tests, benchmarks, the demo and dev sites.

One writer, so that a new key or section reaches every throwaway site the
same way. Values are rendered as TOML (strings, booleans, integers and lists
of those); relative paths stay relative to the config file, as in production.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"

Value = str | Path | bool | int | Sequence[str | Path]


def toml_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


def write_gateway_config(folder: Path, *, anchors: Sequence[str | Path], crls: Sequence[str | Path],
                         directory: Mapping[str, Value], policy: str | Path = "strict.toml",
                         socket: str = "", milter: Mapping[str, Value] | None = None,
                         quarantine: str | Path = "", header: str = "", extra: str = "") -> Path:
    """Write ``folder/sealgate.toml`` and return its path.

    ``policy``: a path, or a file name under the repository's ``policies/``.
    ``socket`` defaults to ``unix:FOLDER/sealgate.sock``, ``quarantine`` to
    ``FOLDER/quarantine``; metrics are off. ``extra`` is appended verbatim
    (more keys of the last section, or whole sections such as ``[card]``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    policy_path = policy if isinstance(policy, Path) or "/" in policy else REPO_POLICIES / policy
    sections: list[tuple[str, Mapping[str, Value]]] = [
        ("milter", {"socket": socket or f"unix:{folder}/sealgate.sock", **(milter or {})}),
        ("directory", directory),
        ("trust", {"anchors": list(anchors), "crls": list(crls)}),
        ("quarantine", {"path": quarantine or folder / "quarantine"}),
        ("metrics", {"listen": ""}),
        ("policy", {"file": policy_path}),
    ]
    lines = [header] if header else []
    lines += ['authserv_id = "mx.example.com"', 'internal_domains = ["example.com"]']
    for name, keys in sections:
        lines += ["", f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    config = folder / "sealgate.toml"
    config.write_text("\n".join(lines) + "\n" + (extra + "\n" if extra else ""))
    return config
