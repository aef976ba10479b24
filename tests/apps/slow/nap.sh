# nap.sh: a 3 s task that says where it ran.
sleep 3
hostname > where.txt
