#!/bin/sh
# Checks examples/upper against tr(1) on a text file given as a regular file (uv_fs_read, and
# uv_fs_write into a file), through pipes (streams), and 4 MB through a pipe (enough to fill the
# channels and stop the reads).   usage: upper-check.sh UPPER TEXTFILE
set -e
up=$1
text=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
LC_ALL=C tr a-z A-Z < "$text" > "$tmp/ref"
"$up" < "$text" > "$tmp/file"
cmp "$tmp/file" "$tmp/ref" || { echo "upper: file to file differs"; exit 1; }
cat "$text" | "$up" | cat > "$tmp/pipe"
cmp "$tmp/pipe" "$tmp/ref" || { echo "upper: pipe to pipe differs"; exit 1; }
n=$(i=0; while [ $i -lt 40 ]; do cat "$text"; i=$((i + 1)); done | "$up" | LC_ALL=C tr -d 'a-z' | wc -c)
m=$(i=0; while [ $i -lt 40 ]; do cat "$text"; i=$((i + 1)); done | wc -c)
[ "$n" = "$m" ] || { echo "upper: 40 copies: $n bytes without lower case, of $m"; exit 1; }
[ -z "$(printf '' | "$up")" ] || { echo "upper: empty input"; exit 1; }
echo "upper: ok"
