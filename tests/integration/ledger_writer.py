"""A process that appends to a region log as fast as it can until it is killed.

Used by test_ledger_crash.py: each acknowledged append is written to the ack file
(index and SHA-256 of the entry) only after `Sequencer.append` returned, i.e. after
the batch committed. Usage: ledger_writer.py STORE KEY ACKS TRIAL, where STORE is a
SQLite file's path or a storage URL (`postgresql://…?schema=…`).
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import threading
from pathlib import Path

from domicile.ledger.keys import load_or_create_signer
from domicile.ledger.log import RegionLog
from domicile.ledger.sequencer import Checkpointer, Sequencer
from domicile.storage.database import open_database
from domicile.storage.url import SqliteUrl, parse_storage_url

ORIGIN = "crash.example/log/eu-ie"


def main() -> None:
    store, key, acks, trial = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    url = parse_storage_url(store) if store.startswith("postgresql://") else SqliteUrl(Path(store))
    log = RegionLog(ORIGIN, open_database(url), load_or_create_signer(key, ORIGIN))
    sequencer = Sequencer(log)
    Checkpointer([log], interval=0.02).start()
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, b"\n")  # the writer killed before this one may have left a torn line

    def writer(n: int) -> None:
        rng = random.Random(f"{trial}-{n}")
        i = 0
        while True:
            batch = [
                f"trial {trial} writer {n} entry {i + j} {'x' * rng.randrange(150, 250)}".encode()
                for j in range(rng.randrange(1, 40))
            ]
            first = sequencer.append(batch)
            lines = "".join(
                f"{first + j} {hashlib.sha256(e).hexdigest()}\n" for j, e in enumerate(batch)
            )
            os.write(fd, lines.encode())  # one write per batch: lines stay whole
            i += len(batch)

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
