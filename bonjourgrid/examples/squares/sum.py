"""Sum every out-*.txt found in the working directory  ->  total.txt"""

import glob

total = sum(int(open(p).read()) for p in glob.glob("out-*.txt"))
with open("total.txt", "w") as f:
    f.write(f"{total}\n")
print(f"sum of squares = {total}")
