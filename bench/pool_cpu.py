#!/usr/bin/env python3
"""Max-pool only: bench/conv_cpu.py --ops pool (same options, same table and JSON).

python bench/pool_cpu.py --threads 2 --json bench/results/pool_latest.json
"""

import sys

import conv_cpu

if __name__ == "__main__":
    sys.exit(conv_cpu.main(["--ops", "pool", *sys.argv[1:]]))
