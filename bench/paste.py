#!/usr/bin/env python3
"""Pastes a bench run into docs/PERFORMANCE.md.

Usage: bench/paste.py [target/bench-deliver.md] [docs/PERFORMANCE.md]

Replaces, from the bench's output (`bench/run.sh` keeps it in target/bench-deliver.md):
the machine list under "## The machine of the figures below", the table under
"## Results", the table under "### The same run, other builds of virt_mail" (built from
the rows of ours), and the verdicts block. The prose around them (dates, what limits each
figure, the acceptance table) is written by hand: read it again after pasting.
"""

import re
import sys

run_path = sys.argv[1] if len(sys.argv) > 1 else "target/bench-deliver.md"
doc_path = sys.argv[2] if len(sys.argv) > 2 else "docs/PERFORMANCE.md"
run = open(run_path, encoding="utf-8").read().splitlines()
doc = open(doc_path, encoding="utf-8").read()

table = [line for line in run if line.startswith("|")]
machine = [line for line in run if re.match(r"- (cpu|disk|binary|load average|steal|stdin|original|pgbench)", line)]
start = run.index("Acceptance (median unless said otherwise):")
verdicts = [line for line in run[start:] if line.startswith(("Acceptance", "- ", "chart:"))]
# The verdicts of the [dynamic] build say nothing the table does not.
verdicts = [line for line in verdicts if "[dynamic]" not in line]
if not table or not machine:
    sys.exit(f"{run_path}: no table or machine lines: not a bench run?")


def cells(line):
    return [c.strip() for c in line.strip("|").split("|")]


header = cells(table[0])
col = {name: i for i, name in enumerate(header)}
BUILDS = [
    ("", "static, code layout (installed)"),
    (" [glibc]", "static, glibc"),
    (" [unordered]", "static, no code layout"),
    (" [sqlite-only]", "static, SQLite only"),
    (" [dynamic]", "dynamic PIE"),
]
ROWS = ["sqlite", "postgres socket", "mariadb socket", "virtuoso"]
rows = {}
for line in table[2:]:
    c = cells(line)
    rows[(c[col["command"]], c[col["message"]])] = c
sizes = list(dict.fromkeys(c[col["message"]] for c in rows.values()))
builds = [
    "| row | message | build | median ms | CPU ms | peak RSS MiB | 2÷1 |",
    "|---|---|---|---:|---:|---:|---:|",
]
for size in sizes:
    for suffix, build in BUILDS:
        for row in ROWS:
            c = rows.get((f"virt_mail {row}{suffix}", size))
            if c:
                builds.append(
                    f"| {row} | {size} | {build} | {c[col['median ms']]} | {c[col['CPU ms']]} "
                    f"| {c[col['peak RSS MiB']]} | {c[col['2÷1']]} |"
                )


def replace_block(text, after, is_part, lines):
    """Replaces the run of lines for which is_part holds, first found after `after`."""
    at = text.index(after) + len(after)
    body = text[at:].split("\n")
    first = next(i for i, line in enumerate(body) if is_part(line))
    last = first
    while last < len(body) and is_part(body[last]):
        last += 1
    return text[:at] + "\n".join(body[:first] + lines + body[last:])


doc = replace_block(doc, "## The machine of the figures below\n", lambda l: l.startswith("- "), machine)
doc = replace_block(doc, "## Results\n", lambda l: l.startswith("|"), table)
doc = replace_block(doc, "### The same run, other builds of virt_mail\n", lambda l: l.startswith("|"), builds)
doc = replace_block(
    doc,
    "The bench's own verdicts",
    lambda l: l.startswith(("Acceptance (", "- ", "chart:")),
    verdicts,
)
open(doc_path, "w", encoding="utf-8").write(doc)
print(f"{doc_path}: machine, results ({len(table) - 2} rows), builds, verdicts pasted from {run_path}")
