#!/usr/bin/env python3
"""Cold and hot totals of the 13 SSB queries through the Python ADBC Flight SQL driver.

Usage: scripts/ssb_cold_hot.py SERVER_EXE CONF [--runs N] [--starts S] [--wait-warm]
                               [--per-query]

Starts `SERVER_EXE --conf CONF --port 0` S times (default 1). Each time: waits for its
"listening" line, connects (timed), runs the 13 queries once in order (the cold run: the
first queries after a start), then N rounds of the 13 (default 10; the hot total is the median
round). Every query is `cursor.execute` + `fetch_arrow_table`; consecutive statements differ,
so the driver prepares each one (CreatePreparedStatement, GetFlightInfo, DoGet,
ClosePreparedStatement), as a BI tool issuing different queries does. With --wait-warm the cold
run starts only after the server logged the end of its warm-up ("warm-up done"); otherwise
right after the listening line. --per-query also prints each query's cold time and hot median.
"""

import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql

QUERIES = Path(__file__).resolve().parent.parent / "tests" / "ssb_queries.sql"
LISTENING = "qilin-server listening on "


def load_queries():
    out, name = [], None
    for line in QUERIES.read_text().splitlines():
        line = line.strip()
        if line.startswith("-- Q"):
            name = line[4:].strip()
        elif line and not line.startswith("--"):
            out.append((name, line.rstrip(";")))
    return out


def start(exe, conf):
    proc = subprocess.Popen(
        [exe, "--conf", conf, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.perf_counter()
    log, warm = [], threading.Event()

    def drain(stream):
        for line in stream:
            log.append(line.rstrip())
            if "warm-up done" in line:
                warm.set()

    threading.Thread(target=drain, args=(proc.stderr,), daemon=True).start()
    for line in proc.stdout:
        if line.startswith(LISTENING):
            addr = line[len(LISTENING) :].strip()
            break
    else:
        raise SystemExit("server exited:\n" + "\n".join(log))
    listening = (time.perf_counter() - started) * 1000
    threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
    return proc, addr, listening, warm, log


def round_of(cur, queries):
    times = []
    for _, sql in queries:
        t = time.perf_counter()
        cur.execute(sql)
        cur.fetch_arrow_table()
        times.append((time.perf_counter() - t) * 1000)
    return times


def main():
    warnings.filterwarnings("ignore", message="Cannot disable autocommit")
    args = sys.argv[1:]

    def opt(name, default):
        if name in args:
            i = args.index(name)
            value = args[i + 1]
            del args[i : i + 2]
            return value
        return default

    def flag(name):
        if name in args:
            args.remove(name)
            return True
        return False

    runs = int(opt("--runs", "10"))
    starts = int(opt("--starts", "1"))
    wait_warm, per_query = flag("--wait-warm"), flag("--per-query")
    exe, conf = args
    queries = load_queries()
    for s in range(starts):
        proc, addr, listening, warm, log = start(exe, conf)
        try:
            if wait_warm and not warm.wait(600):
                raise SystemExit("no warm-up line:\n" + "\n".join(log))
            t = time.perf_counter()
            conn = flightsql.connect(
                f"grpc://{addr}", db_kwargs={"username": "ADMIN", "password": "KYLIN"}
            )
            cur = conn.cursor()
            connect = (time.perf_counter() - t) * 1000
            cold = round_of(cur, queries)
            hot = [round_of(cur, queries) for _ in range(runs)]
            totals = [sum(r) for r in hot]
            hot_total = statistics.median(totals)
            print(
                f"start {s + 1}: listening after {listening:.0f} ms, connect {connect:.1f} ms, "
                f"cold run {sum(cold):.1f} ms, hot run median {hot_total:.1f} ms "
                f"(min {min(totals):.1f}, max {max(totals):.1f}), cold/hot {sum(cold) / hot_total:.1f}x"
            )
            if per_query:
                for i, (name, _) in enumerate(queries):
                    med = statistics.median(r[i] for r in hot)
                    print(f"  Q{name:5} cold {cold[i]:8.2f} ms  hot {med:6.2f} ms")
            for line in log:
                if "warm" in line:
                    print("  server: " + line)
            cur.close()
            conn.close()
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
