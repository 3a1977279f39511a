"""`python -m tcpteardown.schemas`: print the JSON contract's reference page (docs/json.md)."""

from .reference import reference

print(reference(), end="")
