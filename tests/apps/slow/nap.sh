# nap.sh: a 3 s task. With MARK_DIR set, first drops "<task>.<attempt>" there holding the host
# name, so a test knows where each attempt runs.
if [ -n "$MARK_DIR" ]; then
    hostname > "$MARK_DIR/$BJGRID_TASK.$BJGRID_ATTEMPT.tmp"
    mv "$MARK_DIR/$BJGRID_TASK.$BJGRID_ATTEMPT.tmp" "$MARK_DIR/$BJGRID_TASK.$BJGRID_ATTEMPT"
fi
sleep 3
hostname > where.txt
