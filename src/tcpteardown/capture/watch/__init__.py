"""`tcpteardown watch`: the live, host-wide teardown monitor.

Pure middle: `teardowns` (kernel events -> one Teardown per RST/FIN) and
`lines` (a Teardown as text or JSON, with the rule table's errno). I/O at
the edges: `stream` (the witness's trace_pipe), `owners` (/proc: which
process holds a socket) and `recorder` (the flight recorder of --keep,
watch's side), whose `worker` process keeps the bounded `ring` (pure) and
writes the `bundles`, fed through `messages` (never blocking watch).
The command itself is commands/watch.py.
"""
