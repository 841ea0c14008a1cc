"""``torchrun`` entry of the distributed training tests: ``ddp_check.py CONFIG [key=value ...]``."""

import sys

from seedvr2.train import run

if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2:])
