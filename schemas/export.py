"""Writes the JSON Schema of every event in `EVENTS` to `schemas/json/<stem>.schema.json`
(for non-Python subscribers); `--check` only compares and exits 1 when a file differs.

    python -m lineinspect.schemas.export [--check] [--dir DIR]
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from lineinspect.schemas import EVENTS

SCHEMA_DIR = Path(__file__).resolve().parent / "json"
REGENERATE = "python -m lineinspect.schemas.export"
_SUFFIX = ".schema.json"


def schema_text(model: type[BaseModel]) -> str:
    """The JSON Schema of `model` as deterministic text: sorted keys, indent 2, final newline."""
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$comment"] = f"Generated from {model.__module__}.{model.__qualname__} by `{REGENERATE}`; do not edit."
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[str, str]:
    """File name -> content, for every registered event."""
    return {f"{stem}{_SUFFIX}": schema_text(model) for stem, model in EVENTS.items()}


def differing_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files in `directory` that are missing, changed, or no longer generated."""
    expected = expected_files()
    differing = [
        name
        for name, text in expected.items()
        if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text
    ]
    stale = sorted(p.name for p in directory.glob(f"*{_SUFFIX}") if p.name not in expected)
    return differing + stale


def write_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Write every schema file, delete stale ones; returns the names that changed."""
    changed = differing_files(directory)
    directory.mkdir(parents=True, exist_ok=True)
    expected = expected_files()
    for name in changed:
        path = directory / name
        if name in expected:
            # newline="\n": the same bytes on every platform, or --check fails on Windows.
            path.write_text(expected[name], encoding="utf-8", newline="\n")
        else:
            path.unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 and list differing files")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help=f"schema folder (default {SCHEMA_DIR})")
    args = parser.parse_args(argv)
    if args.check:
        differing = differing_files(args.dir)
        if differing:
            print(f"JSON Schemas in {args.dir} differ from the models; run `{REGENERATE}` and commit:", file=sys.stderr)
            for name in differing:
                print(f"  {name}", file=sys.stderr)
            return 1
        print(f"{len(EVENTS)} JSON Schemas in {args.dir} are up to date")
        return 0
    changed = write_files(args.dir)
    print(f"wrote {len(changed)} changed JSON Schema file(s) to {args.dir}" + "".join(f"\n  {n}" for n in changed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
