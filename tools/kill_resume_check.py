"""Does a run survive `kill -9`? Trains scanline's smoke LRCN once without interruption, then
again in another work directory killed with SIGKILL right after three random checkpoints and
rerun each time, and compares the final metrics of the two.

    python tools/kill_resume_check.py [--seed 3] [--work /tmp/kill_check]

Both runs use a fresh HOME under --work (caches and the generated data included), as a new
user would. Prints where each kill landed, what the last rerun resumed from, whether any step
was found damaged, and whether the final metrics are equal.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = [
    "--config=configs/scanline.py:smoke",
    "--config.model.name=lrcn",
    "--config.max_epochs=40",
    "--config.checkpoint_every_epochs=1",
]


def newest_checkpoint(workdir: str) -> int:
    folder = os.path.join(workdir, "checkpoints")
    steps = [int(d) for d in os.listdir(folder) if d.isdigit()] if os.path.isdir(folder) else []
    return max(steps, default=-1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=3, help="picks the kill moments")
    ap.add_argument("--work", default="/tmp/kill_check", help="emptied first")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    home = os.path.join(args.work, "home")
    os.makedirs(home)
    env = dict(os.environ, HOME=home, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    env.pop("XLA_FLAGS", None)
    whole, killed = os.path.join(args.work, "whole"), os.path.join(args.work, "killed")
    cmd = lambda w: [sys.executable, "-m", "scanline.main", *ARGS, f"--workdir={w}"]

    done = subprocess.run(cmd(whole), cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    with open(os.path.join(whole, "final_metrics.json")) as f:
        reference = json.load(f)
    total = newest_checkpoint(whole)
    targets = sorted(random.Random(args.seed).sample(range(4, total - 4), 3))
    print(f"uninterrupted run: {total} steps; SIGKILL after the checkpoints at {targets}")
    for target in targets:
        proc = subprocess.Popen(
            cmd(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        while proc.poll() is None and newest_checkpoint(killed) < target:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        print(f"killed after checkpoint {newest_checkpoint(killed)}")
    done = subprocess.run(cmd(killed), cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    notes = [
        line.split("] ", 1)[-1]
        for line in done.stderr.splitlines()
        if "resumed from" in line or "damaged" in line
    ]
    print("last rerun:", notes)
    with open(os.path.join(killed, "final_metrics.json")) as f:
        final = json.load(f)
    differ = {k: (v, final.get(k)) for k, v in reference.items() if final.get(k) != v}
    print(f"final metrics equal to the uninterrupted run: {not differ}", differ or "")
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
