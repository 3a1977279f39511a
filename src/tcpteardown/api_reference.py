"""docs/api.md, generated from api.py's signatures and docstrings:
`python -m tcpteardown.api_reference > docs/api.md` (tests/test_api.py keeps it current)."""

from __future__ import annotations

import inspect

from . import api


def reference() -> str:
    """The page: the module's docstring, then each public name in `api.__all__`'s order."""
    lines = ["# The Python API", "",
             "Generated from `src/tcpteardown/api.py` by `python -m tcpteardown.api_reference > docs/api.md`;",
             "tests/test_api.py keeps it current. Every name is also `tcpteardown.<name>`.", "",
             inspect.cleandoc(api.__doc__), ""]
    for name in api.__all__:
        thing = getattr(api, name)
        if thing is api.UserError:  # its docstring is the CLI's; say what it means to a script
            lines += [f"## `{name}`", "", "Raised for bad input: one line naming the file, offset or line, "
                      "and what was expected (the CLI prints it and exits 2).", ""]
        elif inspect.isclass(thing):
            lines += [f"## class `{name}`", "", inspect.cleandoc(thing.__doc__ or ""), ""]
            for member, value in vars(thing).items():
                if callable(value) and not member.startswith("_"):
                    lines += [f"### `{name}.{member}{_signature(value)}`", "",
                              inspect.cleandoc(value.__doc__ or ""), ""]
        else:
            lines += [f"## `{name}{_signature(thing)}`", "", inspect.cleandoc(thing.__doc__ or ""), ""]
    lines += ["# The objects", "",
              "What the functions return, frozen dataclasses (times are integer nanoseconds since the epoch,",
              "endpoints `Endpoint(ip, port)`). Fields are only ever added within a major version.", ""]
    for thing in _objects():
        lines += _object(thing)
    return "\n".join(lines).rstrip() + "\n"


def _objects() -> tuple:
    from .analysis.census import Census, ConnectionSummary
    from .analysis.diff import DiffResult
    from .model import CauseKind, Endpoint, Frame, KernelEvent, Link, Metadata, Recording, Segment, SocketCall

    return (Recording, Metadata, SocketCall, Link, CauseKind, Segment, Endpoint, KernelEvent, Frame, Census,
            ConnectionSummary, DiffResult)


def _object(cls) -> list[str]:
    """A class's docstring, then its fields (type and the comment beside them in the source),
    its enum members, or its public methods and properties (first sentence of each docstring)."""
    import dataclasses
    import enum

    lines = [f"## `{cls.__module__.replace('tcpteardown.', '')}.{cls.__name__}`", "",
             inspect.cleandoc(cls.__doc__ or ""), ""]
    rows = []
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        rows = [(member.name, repr(member.value), "") for member in cls]
    elif dataclasses.is_dataclass(cls):
        said = _field_comments(cls)
        rows = [(f.name, str(f.type), said.get(f.name, "")) for f in dataclasses.fields(cls)]
    for name, value in vars(cls).items():
        if name.startswith("_") or not (callable(value) or isinstance(value, property)):
            continue
        doc = inspect.getdoc(value) or ""
        kind = "property" if isinstance(value, property) else f"method{_signature(value).split(' ->')[0]}"
        rows.append((name, kind, doc.split("\n\n")[0].replace("\n", " ")))
    if rows:
        lines += ["| name | type | meaning |", "|---|---|---|"]
        lines += [f"| `{name}` | `{kind}` | {text.replace('|', chr(92) + '|')} |" for name, kind, text in rows]
        lines.append("")
    return lines


def _field_comments(cls) -> dict[str, str]:
    """field name -> the comment written beside it (or on the lines just above it) in the class body."""
    import re

    said, pending = {}, []
    for line in inspect.getsource(cls).splitlines():
        comment = re.match(r"    # (.*)", line)
        if comment:
            pending.append(comment.group(1))
            continue
        field = re.match(r"    (\w+): [^#]*?(?:#\s*(.*))?$", line)
        if field:
            said[field.group(1)] = " ".join([*pending, field.group(2) or ""]).strip()
        pending = []
    return said


class _Written(str):
    """An annotation as written in the source (they are strings here: `from __future__ import annotations`)."""

    def __repr__(self) -> str:
        return str(self)


def _signature(function) -> str:
    signature = inspect.signature(function)
    written = [p.replace(annotation=_Written(p.annotation)) if isinstance(p.annotation, str) else p
               for p in signature.parameters.values()]
    back = signature.return_annotation
    return str(signature.replace(parameters=written,
                                 return_annotation=_Written(back) if isinstance(back, str) else back))


if __name__ == "__main__":
    print(reference(), end="")
