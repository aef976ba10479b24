# total.sh: the fan-in; writes "<number of inputs> <sum>" to total.txt.
n=0
s=0
for f in sq-*.txt; do
    s=$(( s + $(cat "$f") ))
    n=$(( n + 1 ))
done
echo "$n $s" > total.txt
echo "summed $n files"
