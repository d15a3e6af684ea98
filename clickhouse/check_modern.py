#!/usr/bin/env python3
"""Runs the ClickHouse schema, raw rows and read queries on a modern engine
(chdb, in-process ClickHouse from PyPI) and prints each query's rows.

    python3 clickhouse/check_modern.py ROWS.jsonl QUERIES.sql > RESULTS.jsonl

ROWS.jsonl: raw_events rows as JSONEachRow (exported from the server the
test wrote them to). QUERIES.sql: read queries separated by a line ";;".
Output: one JSON array of row objects per query, in order. Used by the
opm-store test `modern_clickhouse_gives_the_same_answers`.
"""
import json
import os
import sys

from chdb import session

HERE = os.path.dirname(os.path.abspath(__file__))
DB = "opm_modern"


def statements(path):
    with open(path) as f:
        code = "\n".join(l for l in f.read().replace("{db}", DB).splitlines() if not l.lstrip().startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]


def main():
    rows_path, queries_path = sys.argv[1], sys.argv[2]
    sess = session.Session()
    sess.query(f"CREATE DATABASE IF NOT EXISTS {DB}")
    for name in sorted(os.listdir(HERE)):
        if name.endswith(".sql"):
            for st in statements(os.path.join(HERE, name)):
                sess.query(st)
    with open(rows_path) as f:
        body = f.read()
    # One INSERT, as the host does: the materialized views fire per block.
    sess.query(f"INSERT INTO {DB}.raw_events FORMAT JSONEachRow\n{body}")
    sess.query(f"USE {DB}")
    with open(queries_path) as f:
        queries = [q.strip() for q in f.read().split("\n;;\n") if q.strip()]
    for q in queries:
        res = sess.query(q + "\nSETTINGS output_format_json_quote_64bit_integers = 0", "JSONEachRow")
        text = res.bytes().decode() if hasattr(res, "bytes") else str(res)
        print(json.dumps([json.loads(l) for l in text.splitlines() if l.strip()]))


if __name__ == "__main__":
    main()
