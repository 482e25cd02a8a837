#!/usr/bin/env python3
"""Turns ptxas's resource report (nvcc -Xptxas -v) into one line per kernel and architecture:
registers, static shared memory, stack frame and spills. Reads a log on stdin where each
compile's lines are either prefixed with 'FILE.cu: ' (scripts/ptxas-report.sh) or follow a
'Building CUDA object ...FILE.cu.o' line (a CMake build log made with Ninja).
    python3 scripts/ptxas_table.py [--json FILE] < log > table.txt
"""
import argparse
import json
import re
import shutil
import subprocess
import sys

ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")
PREFIX = re.compile(r"^([\w.-]+\.cu): ")
BUILDING = re.compile(r"Building CUDA object \S*?([\w.-]+\.cu)\.o")


def parse(lines):
    kernels, current, source = [], None, "?"
    for line in lines:
        prefixed = PREFIX.match(line)
        if prefixed:
            source = prefixed.group(1)
        building = BUILDING.search(line)
        if building:
            source = building.group(1)
        if m := ENTRY.search(line):
            current = {"file": source, "kernel": m.group(1), "arch": m.group(2), "registers": None, "smem": 0,
                       "stack": 0, "spillStores": 0, "spillLoads": 0}
            kernels.append(current)
        elif current and (m := SPILLS.search(line)):
            current["stack"], current["spillStores"], current["spillLoads"] = map(int, m.groups())
        elif current and (m := USED.search(line)):
            current["registers"] = int(m.group(1))
            current["smem"] = int(m.group(2) or 0)
            current = None
    return kernels


def demangle(names):
    if not names or not shutil.which("c++filt"):
        return names
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", help="also write the kernels as JSON here")
    args = parser.parse_args()
    kernels = parse(sys.stdin)
    for k, name in zip(kernels, demangle([k["kernel"] for k in kernels])):
        k["kernel"] = name
    kernels.sort(key=lambda k: (k["file"], k["arch"], k["kernel"]))
    print(f"{'file':<18} {'arch':<6} {'regs':>5} {'smem':>7} {'stack':>6} {'spill st':>9} {'spill ld':>9}  kernel")
    for k in kernels:
        print(f"{k['file']:<18} {k['arch']:<6} {k['registers'] or 0:>5} {k['smem']:>7} {k['stack']:>6} "
              f"{k['spillStores']:>9} {k['spillLoads']:>9}  {k['kernel']}")
    spilling = [k for k in kernels if k["spillStores"] or k["spillLoads"]]
    print(f"# {len(kernels)} kernels, {len(spilling)} with spills")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(kernels, f, indent=1)
    if not kernels:
        print("no ptxas report found in the input (was it built with -Xptxas -v?)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
