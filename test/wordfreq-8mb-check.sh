#!/bin/sh
# Issue 15's acceptance for examples/wordfreq: on a generated 8 MiB text, the output equals the
# reference count of wordfreq-check.sh (tr, sort, uniq), and the peak RSS stays under 64 MB, both
# for stdin as a regular file (uv_fs_read) and as a pipe (a stream; python3 writes into it).
# The text is random but seeded (the same every run): a 60k-word Zipf vocabulary, mixed case,
# punctuation and digits, UTF-8 bytes, CRLF, and now and then a word of 20-70 KB (longer than a
# batch, cut by chunk boundaries). LIMIT_KB 0 leaves the RSS unchecked (sanitizer builds, whose
# shadow memory is not wordfreq's).   usage: wordfreq-8mb-check.sh WORDFREQ [LIMIT_KB]
wf=$1
limit_kb=${2:-65536}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s)

fail() {
  echo "wordfreq-8mb: FAILED: $*"
  exit 1
}

timeout 30 python3 - "$tmp/text" <<'EOF' || fail "could not generate the text"
import random, sys
rng = random.Random(15)
letters = "abcdefghijklmnopqrstuvwxyz"
vocab = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(1, 12)))
                for _ in range(60000)})
rng.shuffle(vocab)
weights = [1.0 / (i + 1) for i in range(len(vocab))]
seps = [" ", " ", " ", ", ", ". ", "\r\n", " -- ", " 42 ", " caf\u00e9 ", "\t", "'s "]
out, size = [], 0
while size < 8 << 20:
    words = rng.choices(vocab, weights, k=4096)
    parts = []
    for w in words:
        r = rng.random()
        if r < 0.1:
            w = w.capitalize()
        elif r < 0.12:
            w = w.upper()
        parts.append(w)
        parts.append(rng.choice(seps))
    if rng.random() < 0.05:
        parts.append("".join(rng.choice(letters) for _ in range(rng.randint(20000, 70000))) + " ")
    s = "".join(parts)
    out.append(s)
    size += len(s.encode())
with open(sys.argv[1], "wb") as f:
    f.write("".join(out).encode()[:8 << 20])
EOF

ref=$(LC_ALL=C tr -cs 'A-Za-z' '\n' < "$tmp/text" | tr 'A-Z' 'a-z' | grep . | LC_ALL=C sort |
  uniq -c | LC_ALL=C sort -k1,1nr -k2,2 | head -10 | awk '{print $1, $2}')
[ "$(echo "$ref" | wc -l)" = 10 ] || fail "the reference count has no 10 lines: $ref"

# measure MODE: runs wordfreq on the text (MODE file or pipe) under a 30 s deadline; prints its
# output, then "rss KB" as the last line. GNU time (/usr/bin/time) measures when present: its
# child's ru_maxrss, which starts from time's own ~2 MB at the fork. Otherwise python3 does
# (RUSAGE_CHILDREN): an upper bound, as the count then starts from python's ~10 MB at the fork.
measure() {
  if /usr/bin/time -f %M true > /dev/null 2>&1; then
    if [ "$1" = file ]; then
      timeout 30 /usr/bin/time -f %M -o "$tmp/rss" "$wf" < "$tmp/text" || return 1
    else
      cat "$tmp/text" | timeout 30 /usr/bin/time -f %M -o "$tmp/rss" "$wf" || return 1
    fi
    echo "rss $(tail -n 1 "$tmp/rss")"
    return 0
  fi
  python3 - "$wf" "$tmp/text" "$1" <<'PY'
import resource, subprocess, sys
wf, path, mode = sys.argv[1:]
with open(path, "rb") as f:
    if mode == "file":
        r = subprocess.run([wf], stdin=f, capture_output=True, timeout=30)
    else:
        r = subprocess.run([wf], input=f.read(), capture_output=True, timeout=30)
sys.stdout.write(r.stdout.decode())
sys.stderr.write(r.stderr.decode())
if r.returncode != 0:
    sys.exit("wordfreq exited with %d" % r.returncode)
print("rss", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
}

summary=""
for mode in file pipe; do
  out=$(measure $mode) || fail "$mode case: $out"
  rss=$(echo "$out" | sed -n 's/^rss //p')
  got=$(echo "$out" | grep -v '^rss ')
  [ "$got" = "$ref" ] || fail "$(printf '%s case:\n%s\n-- expected --\n%s' "$mode" "$got" "$ref")"
  [ -n "$rss" ] && { [ "$limit_kb" = 0 ] || [ "$rss" -lt "$limit_kb" ]; } || fail "$mode case: peak RSS ${rss} KB, limit $limit_kb KB"
  summary="$summary $mode ${rss} KB,"
done
echo "wordfreq-8mb: ok (8 MiB, top 10 as tr|sort|uniq; peak RSS:${summary%,}) in $(($(date +%s) - t0)) s"
