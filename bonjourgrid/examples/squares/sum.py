"""Sum every out-*.txt found in the working directory  ->  total.txt"""

import glob

total = 0
for path in glob.glob("out-*.txt"):
    with open(path) as f:
        total += int(f.read())
with open("total.txt", "w") as f:
    f.write(f"{total}\n")
print(f"sum of squares = {total}")
