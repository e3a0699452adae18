#!/bin/sh
# Checks examples/wordfreq against a reference count made with tr, sort and uniq: the issue's
# one-line case, then a text file given as a regular file and through a pipe (the adapter's two
# paths).   usage: wordfreq-check.sh WORDFREQ TEXTFILE
set -e
wf=$1
text=$2
out=$(echo "b a b" | "$wf")
[ "$out" = "$(printf '2 b\n1 a')" ] || { echo "echo case: got '$out'"; exit 1; }
ref=$(LC_ALL=C tr -cs 'A-Za-z' '\n' < "$text" | tr 'A-Z' 'a-z' | grep . | LC_ALL=C sort |
  uniq -c | LC_ALL=C sort -k1,1nr -k2,2 | head -10 | awk '{print $1, $2}')
got=$("$wf" < "$text")
[ "$got" = "$ref" ] || { printf 'file case:\n%s\n-- expected --\n%s\n' "$got" "$ref"; exit 1; }
# 40 copies through a pipe: about 1 MB, enough to fill the chunk channel and stop the reads
got=$(i=0; while [ $i -lt 40 ]; do cat "$text"; i=$((i + 1)); done | "$wf")
ref3=$(echo "$ref" | awk '{print $1 * 40, $2}')
[ "$got" = "$ref3" ] || { printf 'pipe case:\n%s\n-- expected --\n%s\n' "$got" "$ref3"; exit 1; }
echo "wordfreq: ok"
