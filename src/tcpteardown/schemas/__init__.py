"""The published shapes of every JSON document the CLI prints (JSON Schema 2020-12).

One file per document and version (`explain-1.json`, `census-1.json`, `diff-1.json`,
`run-1.json`, `list-1.json`, `watch-1.json`), all sharing `defs-1.json`: a connection,
a segment, a socket call, a link, a cause, an end and a reason are one definition
each. Every document names its shape in its first key, ``"schema":
"tcpteardown/<document>/<N>"`` (`tag`); `views/contracts` builds the documents,
this package only says what they may hold. A change of shape adds a file with the
next N and keeps the old one printable with ``--json-schema N``
(`commands.add_json_schema_argument`).

`validator(name)` needs the `jsonschema` package (a test dependency, imported only
here); `python -m tcpteardown.schemas` prints the reference page (docs/json.md).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

__all__ = ["CURRENT", "DOCUMENTS", "tag", "load", "validator", "supported"]

# document -> its current shape version; every version from 1 to CURRENT stays printable.
CURRENT = {"explain": 1, "census": 1, "diff": 1, "run": 1, "list": 1, "watch": 1}
DOCUMENTS = tuple(CURRENT)


def tag(name: str, version: int | None = None) -> str:
    """The value of a document's "schema" key: ``tcpteardown/explain/1``."""
    return f"tcpteardown/{name}/{CURRENT[name] if version is None else version}"


def supported(name: str) -> tuple[int, ...]:
    """The versions of `name` this release can print."""
    return tuple(range(1, CURRENT[name] + 1))


@lru_cache(maxsize=None)
def load(name: str, version: int = 1) -> dict:
    """The schema of `name` (a document, or "defs") at `version`, as a dict."""
    text = resources.files(__package__).joinpath(f"{name}-{version}.json").read_text(encoding="utf-8")
    return json.loads(text)


def _registry():
    from referencing import Registry, Resource

    names = ("defs", *DOCUMENTS)
    return Registry().with_resources(
        (load(n)["$id"], Resource.from_contents(load(n))) for n in names)


@lru_cache(maxsize=None)
def validator(name: str, version: int = 1):
    """A jsonschema validator for document `name`: ``validator("explain").validate(doc)``
    raises on any key the schema does not declare, any missing key, any wrong type.
    Built (and the schema checked) once per document and version."""
    from jsonschema import Draft202012Validator

    schema = load(name, version)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER)
