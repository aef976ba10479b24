# square.sh I: writes I*I to sq-I.txt; says which task ran on stdout and stderr.
sleep 0.2
echo $(( $1 * $1 )) > "sq-$1.txt"
echo "square $1"
echo "stderr of $1" >&2
