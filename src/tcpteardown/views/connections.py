"""The connections of a recording, as the views import them.

Their one home is `tcpteardown.analysis.connections` (grouping, calls per
connection, sides, endings, the selection grammar); this module only
re-exports it for the views that import from here.
"""

from ..analysis.connections import ENDINGS, ConnectionView, connections, ending, select_connection

__all__ = ["ConnectionView", "connections", "select_connection", "ENDINGS", "ending"]
