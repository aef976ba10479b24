# summary.sh: the fan-in; every predecessor's out/w-*.txt in task order, and their count.
mkdir -p stats
n=0
: > summary.txt
for i in $(seq 1 19); do
    cat "out/w-$i.txt" >> summary.txt
    n=$((n + 1))
done
echo "$n" > stats/count.txt
echo "summed $n files"
