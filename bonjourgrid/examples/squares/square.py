"""Square one number: python3 square.py I  ->  out-I.txt"""

import socket
import sys
import time

i = int(sys.argv[1])
time.sleep(0.3)  # pretend to work
with open(f"out-{i}.txt", "w") as f:
    f.write(f"{i * i}\n")
print(f"{i}^2 = {i * i} on {socket.gethostname()}")
