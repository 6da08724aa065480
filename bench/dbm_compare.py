"""kvcy.dbm against the standard library's dbm modules, side by side.

    python bench/dbm_compare.py [--num 100000] [--repeat 3] [--seed 11]
        [--variants kvcy.dbm:c,kvcy.dbm:cs,dbm.gnu:c,dbm.gnu:cs,dbm.ndbm:c,dbm.dumb:c,dbm.sqlite3:c]
        [--python /usr/bin/python3 --python python3.13 ...]
        [--len-sizes 100000,1000000] [--len-variants kvcy.dbm:c,dbm.gnu:c,...]

Part 1 (setitem, getitem): for each variant (a module and an open() flag),
a new database, then --num `db[key] = value` with the keys in random order,
then --num `db[key]` of the same keys in another random order on the same
handle.  Keys are 16 bytes (b"%016d"), values 100 bytes (50 random bytes
twice), made before the timing from --seed.  Each variant runs in a child
process of its own, in a fresh temporary directory; round r starts at
variant r mod n so that no variant always runs first; the table shows the
median ops/s of --repeat rounds and kvcy.dbm's ratio to each peer (kvcy.dbm
opened with the same 's' or no 's', so synced rows are compared with the
synced kvcy row).

Part 2 (len): for each --len-sizes N and --len-variants variant, fill N keys
(dbm.sqlite3 in one transaction, every other module with setitem), close,
open again with 'w', then time the first len(), a second len(), and len()
right after one setitem (what a loop that mixes writes and len() pays per
call).

The dbm modules are C extensions (dbm.gnu, dbm.ndbm) or pure Python over
sqlite3 (dbm.sqlite3, Python 3.13+) that not every interpreter has: a peer
module runs under the first interpreter of this one, then each --python in
order, that can import it; the table names the interpreter.  kvcy.dbm runs
under this interpreter.  Variants that no interpreter has are skipped with a
note.  A measurement script, not a test: it asserts nothing about speed.
"""
import argparse
import importlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_VARIANTS = ("kvcy.dbm:c,kvcy.dbm:cs,dbm.gnu:c,dbm.gnu:cs,dbm.ndbm:c,dbm.dumb:c,"
                    "dbm.sqlite3:c")
DEFAULT_LEN_VARIANTS = "kvcy.dbm:c,dbm.gnu:c,dbm.ndbm:c,dbm.dumb:c,dbm.sqlite3:c"
DEFAULT_PYTHONS = ("/usr/bin/python3", "python3.13")


# -- the child: runs one variant and prints JSON ----------------------------

def make_data(num, seed):
    rng = random.Random(seed)
    keys = [b"%016d" % i for i in range(num)]
    values = []
    for _ in range(num):
        half = rng.randbytes(50)
        values.append(half + half)
    write_order = list(range(num))
    rng.shuffle(write_order)
    read_order = list(range(num))
    rng.shuffle(read_order)
    return keys, values, write_order, read_order


def run_speed(module, flag, path, num, seed):
    keys, values, write_order, read_order = make_data(num, seed)
    db = module.open(path, flag)
    start = time.perf_counter()
    for i in write_order:
        db[keys[i]] = values[i]
    set_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for i in read_order:
        db[keys[i]]
    get_seconds = time.perf_counter() - start
    assert db[keys[0]] == values[0] and db.get(b"absent") is None
    db.close()
    return {"setitem": num / set_seconds, "getitem": num / get_seconds}


def run_len(module, flag, path, num, seed):
    keys, values, write_order, _ = make_data(num, seed)
    db = module.open(path, flag)
    one_transaction = module.__name__ == "dbm.sqlite3"
    if one_transaction:
        db._cx.execute("BEGIN")          # only to fill it in minutes, not hours
    for i in write_order:
        db[keys[i]] = values[i]
    if one_transaction:
        db._cx.execute("COMMIT")
    db.close()
    db = module.open(path, "w")
    timings = {}
    for name in ("len_first", "len_second"):
        start = time.perf_counter()
        count = len(db)
        timings[name] = time.perf_counter() - start
    assert count == num, (count, num)
    db[b"one more key"] = b"v"
    start = time.perf_counter()
    count = len(db)
    timings["len_after_setitem"] = time.perf_counter() - start
    assert count == num + 1
    db.close()
    return timings


def child(args):
    module = importlib.import_module(args.module)
    parent = tempfile.mkdtemp(prefix="dbm_compare-")
    try:
        path = os.path.join(parent, "db")
        run = run_len if args.child == "len" else run_speed
        result = run(module, args.flag, path, args.num, args.seed)
    finally:
        shutil.rmtree(parent)
    result["python"] = "%d.%d.%d" % sys.version_info[:3]
    print(json.dumps(result))


# -- the parent: finds interpreters, rotates variants, prints tables --------

def find_python(module_name, pythons, cache):
    candidates = [sys.executable] if module_name == "kvcy.dbm" else [sys.executable, *pythons]
    for python in candidates:
        key = (python, module_name)
        if key not in cache:
            probe = subprocess.run([python, "-c", "import %s" % module_name],
                                   capture_output=True)
            cache[key] = probe.returncode == 0
        if cache[key]:
            return python
    return None


def run_child(python, kind, module, flag, num, seed):
    env = dict(os.environ)
    if module == "kvcy.dbm":
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    out = subprocess.run([python, os.path.abspath(__file__), "--child", kind, "--module",
                          module, "--flag", flag, "--num", str(num), "--seed", str(seed)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit("%s %s failed under %s:\n%s" % (module, flag, python, out.stderr))
    return json.loads(out.stdout)


def parse_variants(text, pythons, cache):
    found = []
    for item in text.split(","):
        module, _, flag = item.strip().partition(":")
        python = find_python(module, pythons, cache)
        if python is None:
            print("note: no interpreter imports %s; skipped" % module)
            continue
        found.append((module, flag or "c", python))
    return found


def label(module, flag):
    return "%s '%s'" % (module, flag)


def speed_table(variants, args):
    samples = {(m, f): {"setitem": [], "getitem": []} for m, f, _ in variants}
    pythons = {}
    for round_ in range(args.repeat):
        start = round_ % len(variants)
        for module, flag, python in variants[start:] + variants[:start]:
            result = run_child(python, "speed", module, flag, args.num, args.seed + round_)
            pythons[module, flag] = result["python"]
            for op in ("setitem", "getitem"):
                samples[module, flag][op].append(result[op])
    median = {v: {op: statistics.median(s) for op, s in ops.items()}
              for v, ops in samples.items()}

    def kvcy_row(flag):
        return median.get(("kvcy.dbm", "cs" if "s" in flag else "c"))

    print("\n%d setitem then %d getitem, random keys, median of %d rounds (ops/s)\n"
          % (args.num, args.num, args.repeat))
    print("| module, flag | python | setitem/s | getitem/s | kvcy.dbm/peer setitem "
          "| kvcy.dbm/peer getitem |")
    print("|---|---|---:|---:|---:|---:|")
    for module, flag, _ in variants:
        row = median[module, flag]
        ref = kvcy_row(flag)
        ratios = ["%.2f" % (ref[op] / row[op]) if ref and module != "kvcy.dbm" else ""
                  for op in ("setitem", "getitem")]
        print("| %s | %s | %s | %s | %s | %s |" % (
            label(module, flag), pythons[module, flag], "{:,.0f}".format(row["setitem"]),
            "{:,.0f}".format(row["getitem"]), *ratios))


def len_table(variants, args):
    sizes = [int(s) for s in args.len_sizes.split(",") if s]
    print("\nlen() on N keys, after reopening with 'w' (milliseconds)\n")
    print("| module | N | first len() | second len() | len() after a setitem |")
    print("|---|---:|---:|---:|---:|")
    for num in sizes:
        for module, flag, python in variants:
            result = run_child(python, "len", module, flag, num, args.seed)
            print("| %s | %s | %.3f | %.3f | %.3f |" % (
                module, "{:,}".format(num), 1e3 * result["len_first"],
                1e3 * result["len_second"], 1e3 * result["len_after_setitem"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS)
    parser.add_argument("--python", action="append", dest="pythons",
                        help="another interpreter to try for peer modules (repeatable)")
    parser.add_argument("--len-sizes", default="100000,1000000",
                        help="comma-separated key counts for the len() table; empty skips it")
    parser.add_argument("--len-variants", default=DEFAULT_LEN_VARIANTS)
    parser.add_argument("--child", choices=("speed", "len"), help=argparse.SUPPRESS)
    parser.add_argument("--module", help=argparse.SUPPRESS)
    parser.add_argument("--flag", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    pythons = [p for p in (args.pythons or DEFAULT_PYTHONS) if shutil.which(p)]
    cache = {}
    variants = parse_variants(args.variants, pythons, cache)
    if variants and args.num:
        speed_table(variants, args)
    if args.len_sizes:
        len_table(parse_variants(args.len_variants, pythons, cache), args)


if __name__ == "__main__":
    main()
