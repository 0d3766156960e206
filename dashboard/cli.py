"""`oficina serve`: the Panel server (pages, login, REST API, static files)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="start the web server")
    p.add_argument("--port", type=int, default=None, help="default PORT (5006)")
    p.add_argument("--address", default=None, help="default ADDRESS (127.0.0.1)")
    p.add_argument("--num-threads", type=int, default=None, help="default WEB_THREADS")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import panel_serve

    panel_serve.main(port=args.port, address=args.address, num_threads=args.num_threads)
    return 0
