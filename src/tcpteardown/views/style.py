"""Colours, font sizes and the one place figures are saved.

Every view draws inside `figure_style()` (fixed rcParams, so a user's
matplotlibrc never changes our pictures) and saves through `save_figure()`
(fixed SVG hash salt, no dates in SVG/PDF metadata), so the same input gives
byte-identical files. This module must never touch pyplot's global state:
views build `matplotlib.figure.Figure` objects directly.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional, Union


from ..mplconfig import settle_matplotlib_dirs

settle_matplotlib_dirs()

import matplotlib  # noqa: E402  (after its cache folder is settled)

from ..model import Segment

# -- colours: one meaning each --------------------------------------------------
RST = "#c62828"  # reset: red
FIN = "#1f5fbf"  # orderly close: blue
SYN = "#8a8a8a"  # opening handshake: grey
DATA = "#111111"  # data and pure ACKs: black
FAILURE = "#c62828"  # a socket call that failed
OK = "#2e7d32"  # a socket call that succeeded
EOF = FIN  # end-of-file is the FIN seen by the application
CONNECTOR = "#8e1b1b"  # dashed line from a failing call to its cause
LIFELINE = "#444444"
STATE = "#5d4037"  # TCP state names along the lifelines
BREAK = "#9e9e9e"  # compressed idle gap
MUTED = "#616161"

# How a connection ended (the census / overview colours).
ENDING_COLOURS = {
    "fin": FIN,
    "rst": RST,
    "refused": "#ef6c00",
    "open": "#9e9e9e",
    "no-packets": "#7e57c2",  # only socket calls tell of it: no segment was seen
}

# -- sizes (points): nothing below 9 pt at the default figure size ------------
FONT = 10
SMALL = 9
TITLE = 12
PNG_DPI = 100  # 9 pt = 12.5 px: legible at 100 % zoom

RC = {
    "font.family": "DejaVu Sans",  # shipped with matplotlib: same glyphs on every host
    "font.size": FONT,
    "axes.titlesize": TITLE,
    "svg.hashsalt": "tcpteardown",
    "svg.fonttype": "path",
    "pdf.fonttype": 42,
    "path.simplify": True,
    # Unhinted glyphs: about twice as fast to rasterise as the default
    # auto-hinting, and the same shapes a browser draws from the SVG.
    "text.hinting": "no_hinting",
    "axes.unicode_minus": False,
    "figure.dpi": 100,
    "savefig.dpi": PNG_DPI,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
}

FORMATS = (".png", ".svg", ".pdf")


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Our rcParams for the duration of drawing and saving."""
    with matplotlib.rc_context(RC):
        yield


def segment_colour(segment: Segment) -> str:
    """RST red, FIN blue, SYN grey, data and ACKs black (RST wins over FIN)."""
    if segment.is_rst:
        return RST
    if segment.is_fin:
        return FIN
    if segment.is_syn:
        return SYN
    return DATA


def segment_kind(segment: Segment) -> str:
    if segment.is_rst:
        return "RST"
    if segment.is_fin:
        return "FIN"
    if segment.is_syn:
        return "SYN"
    return "data" if segment.payload_len else "ACK"


def save_figure(figure, path: Union[str, Path], *, dpi: Optional[int] = None) -> Path:
    """Write `figure` as PNG, SVG or PDF (by suffix), reproducibly."""
    from ..errors import UserError

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"cannot write {path}: expected a .png, .svg or .pdf file name")
    metadata = {
        ".png": {"Software": None},
        ".svg": {"Date": None, "Creator": None},
        ".pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
    }[suffix]
    # zlib level 1: a ladder is flat colour, so the file is barely larger and
    # writing it is several times faster than the default level 6.
    extra = {"pil_kwargs": {"compress_level": 1}} if suffix == ".png" else {}
    with figure_style():
        try:
            figure.savefig(path, dpi=dpi or PNG_DPI, metadata=metadata, **extra)
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
