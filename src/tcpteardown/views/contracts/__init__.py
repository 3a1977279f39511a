"""Every JSON document the CLI prints, one module per document; the shapes are DESIGN.md's contracts.

`census` (census --json), `links` (explain --json), `diff` (diff --json),
`run` (run --json) and `scenarios` (list --json). Each module turns result
objects into plain dicts (or, for the census, streams them); commands print
them, nothing else builds these shapes.
"""
