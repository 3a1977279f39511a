"""One module per CLI subcommand: HELP, add_arguments(parser), run(args) -> int."""

import argparse as _argparse


def add_json_schema_argument(parser: _argparse.ArgumentParser, document: str) -> None:
    """`--json-schema N`: print --json in shape N of `document` (implies --json).
    Every shape from 1 to the current one stays printable (README, "The JSON contract")."""
    from ..schemas import supported, tag

    class _Shape(_argparse.Action):
        def __call__(self, parser, namespace, value, option_string=None):
            known = supported(document)
            if not value.isdigit() or int(value) not in known:
                parser.error(f"{option_string} {value}: this release prints {document} --json in shapes "
                             f"{', '.join(map(str, known))} (current: {tag(document)})")
            setattr(namespace, self.dest, int(value))
            namespace.json = True

    parser.add_argument("--json-schema", metavar="N", action=_Shape, default=None,
                        help=f"print --json in shape N of {tag(document).rsplit('/', 1)[0]} (implies --json; "
                             "default: the current shape)")
