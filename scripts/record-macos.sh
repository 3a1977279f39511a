#!/bin/bash
# Record every tcpteardown scenario on this Mac and write the bundles into
# captures/macos/, with the Mac's sw_vers, for a pull request.
#
#   sudo scripts/record-macos.sh            # from the repository's root
#   scripts/record-macos.sh                 # without sudo, after Wireshark's ChmodBPF (group access_bpf)
#
# Writes captures/macos/<scenario>.pcapng (IPv4) and captures/macos/ipv6/<scenario>.pcapng,
# captures/macos/sw_vers.txt, and one line per bundle in captures/macos/README.md.
# A scenario whose kernel did something else than its Darwin expectation is kept
# too (that is the news: open the pull request anyway, and say so); one this Mac
# cannot run (network namespaces are Linux's) is listed as skipped. Never edit a
# bundle by hand. Runs with macOS's own bash 3.2.
set -u

die() { echo "record-macos: $*" >&2; exit 2; }

[ "$(uname -s)" = "Darwin" ] || die "this records on a Mac; on $(uname -s) use 'make captures' (captures/linux/)"
cd "$(dirname "$0")/.." || die "cannot enter the repository"
[ -f pyproject.toml ] || die "run it from a clone of tcpteardown"

PY=.venv/bin/python
if [ ! -x "$PY" ]; then
    echo "record-macos: creating .venv (python3 -m venv) and installing tcpteardown into it"
    python3 -m venv .venv || die "python3 -m venv failed (install Python 3.10+ from python.org or Homebrew)"
    .venv/bin/pip install -q -e . || die "pip install -e . failed"
fi
if [ "$(id -u)" -ne 0 ] && ! [ -r /dev/bpf0 ]; then
    die "capturing on lo0 needs read access to /dev/bpf*: run with sudo, or install Wireshark's ChmodBPF (group access_bpf)"
fi

OUT=captures/macos
mkdir -p "$OUT/ipv6" || die "cannot create $OUT"
PRODUCT=$(sw_vers -productVersion) BUILD=$(sw_vers -buildVersion) KERNEL=$(uname -r)
TODAY=$(date -u +%Y-%m-%d)
sw_vers > "$OUT/sw_vers.txt"
uname -a >> "$OUT/sw_vers.txt"
echo "record-macos: macOS $PRODUCT ($BUILD), Darwin $KERNEL"

NAMES=$("$PY" -m tcpteardown list --json | "$PY" -c 'import json,sys; print(" ".join(s["name"] for s in json.load(sys.stdin)["scenarios"]))') \
    || die "tcpteardown list failed"
as_expected=0 differs=0 skipped=0
for name in $NAMES; do
    for family in ipv4 ipv6; do
        if [ "$family" = ipv6 ]; then file="$OUT/ipv6/$name.pcapng" flag=--ipv6; else file="$OUT/$name.pcapng" flag=; fi
        "$PY" -m tcpteardown run "$name" $flag -o "$file" > "$file.txt" 2>&1
        status=$?
        case $status in
            0) as_expected=$((as_expected + 1)) verdict="as expected" ;;
            1) differs=$((differs + 1)) verdict="DIFFERS from its Darwin expectation" ;;
            *) skipped=$((skipped + 1)); echo "  $name ($family): skipped: $(tail -n 1 "$file.txt")"
               rm -f "$file" "$file.txt"; continue ;;
        esac
        rm -f "$file.txt"
        echo "  $name ($family): $verdict -> $file"
        echo "| \`${file#$OUT/}\` | $name ($family) | $PRODUCT ($BUILD) | $KERNEL | $TODAY | scripts/record-macos.sh: $verdict |" \
            >> "$OUT/README.md"
    done
done
echo "record-macos: $as_expected as expected, $differs differing, $skipped skipped; bundles and README lines in $OUT/"
echo "record-macos: check with 'tcpteardown diff captures/linux/broken-pipe.pcapng $OUT/broken-pipe.pcapng', then open a pull request"
