# bad.sh: fails on purpose, every attempt.
echo "bad attempt $BJGRID_ATTEMPT failing on purpose" >&2
exit 3
