"""kill -9 in the middle of writing: nothing acknowledged is lost, no batch is partial.

A child process opens the database with sync=False and writes a
deterministic sequence of operations (make_op(seed, i): puts, deletes,
put_many batches whose keys all get one batch-id value, delete_many
batches), printing one acknowledgement line per write after it returns.
The parent kills it with SIGKILL after a random short time, reopens the
database (paranoid checks on) and checks the contract of docs/DESIGN.md:
the recovered state is exactly the model after every acknowledged op,
possibly plus the one op that was in flight (it may have returned without
being acknowledged yet).  Rounds continue the op sequence on the same
directory, so later rounds also recover the logs of earlier recoveries;
some rounds kill at a random moment after spawning, which can land inside
the child's own open (recovery).

The seed is random unless KVCY_CRASH_SEED is set; failures print it.
"""
import inspect
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import kvcy

N_KEYS = 300


def make_op(seed, i):
    """Op number i of the sequence of seed: ("put", key, value),
    ("delete", key), ("batch", [(key, value)...]) or ("delete_many", [key...]).
    Every value starts with the op number, so each write is distinguishable;
    all keys of a batch get the same value (the batch id)."""
    rng = random.Random(seed * 1000003 + i)
    r = rng.random()
    if r < 0.5:
        size = 40000 if rng.random() < 0.002 else rng.randrange(0, 100)
        return ("put", b"k%05d" % rng.randrange(N_KEYS), b"p%d:" % i + b"x" * size)
    if r < 0.65:
        return ("delete", b"k%05d" % rng.randrange(N_KEYS))
    if r < 0.9:
        keys = rng.sample(range(N_KEYS), rng.randrange(2, 12))
        value = b"b%d:" % i + b"y" * rng.randrange(0, 200)
        return ("batch", [(b"k%05d" % k, value) for k in keys])
    return ("delete_many", [b"k%05d" % k for k in rng.sample(range(N_KEYS), rng.randrange(2, 6))])


CHILD_MAIN = '''
import json
import sys
import kvcy


def main():
    path, seed, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    compact_every = int(sys.argv[5]) if len(sys.argv) > 5 else 0   # ops between compact_range calls
    conn = kvcy.connect(path, sync=False, **options)
    out = sys.stdout
    out.write("ready\\n")
    out.flush()
    i = start
    while True:
        op = make_op(seed, i)
        if op[0] == "put":
            conn.put(op[1], op[2])
        elif op[0] == "delete":
            conn.delete(op[1])
        elif op[0] == "batch":
            conn.put_many(op[1])
        else:
            conn.delete_many(op[1])
        out.write("%d\\n" % i)
        out.flush()
        i += 1
        if compact_every and i % compact_every == 0:
            conn.compact_range()         # manual compactions beside the background ones


main()
'''


def write_child_script(path):
    """The child of the kill -9 tests: argv = db seed start [options-json [compact-every]].
    It acknowledges each op on stdout once the write returned."""
    path.write_text("import random\nN_KEYS = %d\n\n%s\n%s" % (
        N_KEYS, textwrap.dedent(inspect.getsource(make_op)), CHILD_MAIN))


def apply_op(model, op):
    if op[0] == "put":
        model[op[1]] = op[2]
    elif op[0] == "delete":
        model.pop(op[1], None)
    elif op[0] == "batch":
        model.update(op[1])
    else:
        for k in op[1]:
            model.pop(k, None)


def all_keys():
    return [b"k%05d" % k for k in range(N_KEYS)]


def read_state(conn):
    keys = all_keys()
    return {k: v for k, v in zip(keys, conn.get_many(keys)) if v is not None}


def op_number(value):
    """The op number a stored value carries (b"p12:..." or b"b12:...")."""
    return int(value[1:value.index(b":")])


def partial_batches(state, seed, first, last):
    """Batch ops in [first, last] that the state shows partly applied: some key
    carries the batch's value while another key of the batch holds a value
    older than the batch (or is absent though no later op deleted it)."""
    later_deletes = {}
    for i in range(first, last + 1):
        op = make_op(seed, i)
        if op[0] == "delete":
            later_deletes.setdefault(op[1], []).append(i)
        elif op[0] == "delete_many":
            for k in op[1]:
                later_deletes.setdefault(k, []).append(i)
    bad = []
    for i in range(first, last + 1):
        op = make_op(seed, i)
        if op[0] != "batch":
            continue
        keys = [k for k, _ in op[1]]
        if not any(k in state and op_number(state[k]) == i for k in keys):
            continue
        for k in keys:
            if k in state:
                if op_number(state[k]) < i:
                    bad.append((i, k))
            elif not any(j > i for j in later_deletes.get(k, ())):
                bad.append((i, k))
    return bad


def child_env():
    """The environment for a child: it must import the kvcy this process tested."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(kvcy.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def wait_for_ready(proc, ack_path, deadline):
    while time.monotonic() < deadline:
        if ack_path.read_bytes().startswith(b"ready\n"):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def run_crash_rounds(tmp_path, rounds, seed):
    script = tmp_path / "child.py"
    write_child_script(script)
    db = tmp_path / "db"
    rng = random.Random(seed)
    model = {}
    start = 0
    total_acked = 0
    in_flight_applied = 0
    for rnd in range(rounds):
        where = "seed=%d round=%d start=%d" % (seed, rnd, start)
        ack_path = tmp_path / ("acks%d.txt" % rnd)
        err_path = tmp_path / ("stderr%d.txt" % rnd)
        anytime = rng.random() < 0.25     # may kill the child during its own open
        with open(ack_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, str(script), str(db), str(seed), str(start)],
                                    stdout=out, stderr=err, env=child_env())
            try:
                if anytime:
                    time.sleep(rng.uniform(0.02, 0.6))
                else:
                    ready = wait_for_ready(proc, ack_path, time.monotonic() + 60)
                    assert ready, "%s: child did not start: %s" % (where, err_path.read_text())
                    time.sleep(rng.uniform(0.01, 0.25))
                assert proc.poll() is None, "%s: child exited early (%s): %s" % (
                    where, proc.returncode, err_path.read_text())
                proc.send_signal(signal.SIGKILL)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, "%s: %s" % (where, err_path.read_text())

        lines = ack_path.read_bytes().split(b"\n")[:-1]   # a cut-off last line is no ack
        if lines and lines[0] == b"ready":
            lines = lines[1:]
        acked = [int(x) for x in lines]
        assert acked == list(range(start, start + len(acked))), where
        total_acked += len(acked)

        expected = dict(model)
        for i in acked:
            apply_op(expected, make_op(seed, i))
        in_flight = start + len(acked)
        expected_plus = dict(expected)
        apply_op(expected_plus, make_op(seed, in_flight))

        # Alternate read-only checks (replay only, as the next child's open
        # will find the files) and writable ones (replay plus rewrite).
        with kvcy.connect(db, readonly=rnd % 2 == 1) as conn:
            state = read_state(conn)
            stats = conn.stats()
        assert stats["dropped_bytes"] == 0, where
        if state != expected and state != expected_plus:
            partial = partial_batches(state, seed, 0, in_flight)
            lost = sorted(k for k in expected if state.get(k) != expected[k]
                          and state.get(k) != expected_plus.get(k))
            extra = sorted(k for k in state if k not in expected and k not in expected_plus)
            pytest.fail("%s: recovered state is not the model after %d acked ops (+%d in "
                        "flight); keys wrong: %r; unexpected keys: %r; partial batches: %r"
                        % (where, len(acked), in_flight, lost[:10], extra[:10], partial[:10]))
        if state == expected_plus and state != expected:
            in_flight_applied += 1
        model = state
        start = in_flight + 1   # the in-flight op is accounted for either way
    # A last clean open: the history survives a reopen with no kill at all.
    with kvcy.connect(db) as conn:
        assert read_state(conn) == model
    return total_acked, in_flight_applied


def _seed():
    env = os.environ.get("KVCY_CRASH_SEED")
    return int(env) if env else random.randrange(1 << 30)


def test_make_op_is_deterministic_and_covers_every_kind():
    kinds = {make_op(7, i)[0] for i in range(200)}
    assert kinds == {"put", "delete", "batch", "delete_many"}
    assert [make_op(7, i) for i in range(50)] == [make_op(7, i) for i in range(50)]


def test_partial_batch_detector():
    # The diagnostic used on failure must itself see a half-applied batch.
    seed = 11
    i = next(i for i in range(1000) if make_op(seed, i)[0] == "batch")
    pairs = make_op(seed, i)[1]
    whole = dict(pairs)
    assert partial_batches(whole, seed, i, i) == []
    half = dict(pairs[:1])
    assert partial_batches(half, seed, i, i) == [(i, k) for k, _ in pairs[1:]]


def test_kill_9_while_writing(tmp_path):
    seed = _seed()
    acked, _ = run_crash_rounds(tmp_path, rounds=5, seed=seed)
    assert acked > 0, "seed=%d: the child acknowledged no write in any round" % seed


@pytest.mark.slow
def test_kill_9_while_writing_many_rounds(tmp_path):
    seed = _seed()
    acked, _ = run_crash_rounds(tmp_path, rounds=50, seed=seed)
    assert acked > 1000, "seed=%d" % seed
