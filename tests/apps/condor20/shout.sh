# shout.sh I: line I of words.txt (an input file), upper-cased, into out/w-I.txt (a nested
# output); says what it did on stdout and stderr. Only sh and coreutils: runs anywhere.
sleep "${NAP:-0.3}"
mkdir -p out
word=$(sed -n "${1}p" words.txt)
printf '%s %s (%s)\n' "$1" "$word" "$MARK" | tr a-z A-Z > "out/w-$1.txt"
echo "shouted $1"
echo "note $1" >&2
