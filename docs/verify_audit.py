#!/usr/bin/env python3
"""Verify a perfusio audit.jsonl without perfusio (Python 3 standard library only).

Usage: verify_audit.py FILE [EXPECTED_HEAD]
Prints "OK <n> records, head hash <hash>" and exits 0, or names the first bad record and exits 1.
The format is specified in docs/audit-format.md.
"""
import hashlib
import json
import sys

GENESIS = "0" * 64
MEMBERS = {"actor", "day", "hash", "kind", "payload", "prev", "reactor_id", "run_id", "seq",
           "state_sha256", "ts", "v"}


def canonical(obj):
    # Sorted keys, no whitespace, UTF-8, floats as repr(): exactly the canonical form.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def verify(path, expected_head=None):
    data = open(path, "rb").read()
    lines = data.split(b"\n")
    if lines[-1] != b"":
        return False, "record %d: torn tail: the last line has no newline" % len(lines)
    prev = GENESIS
    for n, line in enumerate(lines[:-1], start=1):
        try:
            rec = json.loads(line.decode("utf-8"))
            ok = isinstance(rec, dict) and set(rec) == MEMBERS and canonical(rec) == line
        except ValueError as e:
            return False, "record %d: malformed: %s" % (n, e)
        if not ok:
            return False, "record %d: malformed: wrong members or not canonical" % n
        stored = rec.pop("hash")
        if hashlib.sha256(canonical(rec)).hexdigest() != stored:
            return False, "record %d: content does not match its hash" % n
        if rec["seq"] != n or rec["prev"] != prev:
            return False, "record %d: chain broken (seq %r, prev %s)" % (n, rec["seq"], rec["prev"])
        prev = stored
    if expected_head is not None and expected_head != prev:
        return False, "head %s is not the expected head %s" % (prev, expected_head)
    return True, "OK %d records, head hash %s" % (len(lines) - 1, prev)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    ok, message = verify(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
    print(message)
    sys.exit(0 if ok else 1)
