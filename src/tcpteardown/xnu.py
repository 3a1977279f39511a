"""The XNU source every Darwin rule cites: one tag for the whole project.

Darwin expectations (`scenarios.xnu`) and predictions (`analysis.predict`)
cite files, functions and lines of github.com/apple-oss-distributions/xnu
at this tag (macOS 15.5); `scripts/check-xnu-citations.py` checks them
against a clone.
"""

XNU_TAG = "xnu-11417.121.6"
