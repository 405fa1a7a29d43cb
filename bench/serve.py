"""Launch one benchmark server with uvicorn; both servers go through here, so they share
every server setting (one process, 127.0.0.1, access log off, log level warning, the same
loop and HTTP implementation).

    python bench/serve.py domicile --data-dir DIR [--storage-url URL] --port P
    python bench/serve.py bare --db FILE --port P
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio.to_thread
import uvicorn


class ThreadLimit:
    """Set anyio's default thread limiter (the pool sync endpoints run in) on first use."""

    def __init__(self, app: Any, tokens: int) -> None:
        self.app = app
        self.tokens = tokens
        self.done = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.done:
            anyio.to_thread.current_default_thread_limiter().total_tokens = self.tokens
            self.done = True
        await self.app(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=["domicile", "bare"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, help="domicile: its data directory")
    parser.add_argument("--storage-url", default=None, help="domicile: postgresql://… url")
    parser.add_argument("--db", type=Path, help="bare: the SQLite file")
    parser.add_argument("--loop", default="auto", help="uvicorn --loop (auto, asyncio, uvloop)")
    parser.add_argument("--http", default="auto", help="uvicorn --http (auto, h11, httptools)")
    parser.add_argument(
        "--threadpool", type=int, default=None, help="threads for sync endpoints (anyio: 40)"
    )
    args = parser.parse_args()

    if args.app == "domicile":
        from domicile.api.app import create_app
        from domicile.settings import Settings

        if args.data_dir is None:
            parser.error("domicile needs --data-dir")
        app = create_app(Settings(data_dir=args.data_dir, storage_url=args.storage_url))
    else:
        from bare_app import create_app as create_bare

        if args.db is None:
            parser.error("bare needs --db")
        app = create_bare(args.db)

    uvicorn.run(
        app if args.threadpool is None else ThreadLimit(app, args.threadpool),
        host="127.0.0.1",
        port=args.port,
        workers=None,
        log_level="warning",
        access_log=False,
        loop=args.loop,
        http=args.http,
    )


if __name__ == "__main__":
    main()
