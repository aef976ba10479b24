"""Run htcondor2 client calls inside a virtual-LAN host (tests run in the root namespace).

Usage: ``python _in_host.py`` with a JSON request on stdin; prints one JSON answer.
  {"params": {...}, "do": "machines"}
  {"params": {...}, "do": "run", "spec": {...JobSpec fields...}, "timeout": 30}
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bonjourgrid.ce_backends.condor.jobs import CondorClient, JobSpec


def main() -> None:
    req = json.load(sys.stdin)
    client = CondorClient(req["params"])
    if req["do"] == "machines":
        print(json.dumps({"machines": client.machines()}))
        return
    spec = JobSpec(**{**req["spec"], "job_dir": Path(req["spec"]["job_dir"])})
    t0 = time.monotonic()
    cluster = client.submit(spec)
    t_submit = time.monotonic() - t0
    deadline = t0 + req["timeout"]
    first_run = None
    while True:
        info = client.jobs([cluster]).get(cluster)
        if info is not None:
            if first_run is None and info.starts > 0:
                first_run = time.monotonic() - t0
            if info.status in (3, 4, 5):
                break
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"timeout, last {info}"}))
            return
        time.sleep(0.05)
    print(
        json.dumps(
            {
                "cluster": cluster,
                "status": int(info.status),
                "state": info.state.value,
                "exit_code": info.exit_code,
                "hold_reason": info.hold_reason,
                "remote_host": info.remote_host,
                "submit_s": t_submit,
                "first_start_s": first_run,
                "done_s": time.monotonic() - t0,
            }
        )
    )


if __name__ == "__main__":
    main()
