"""``python -m bricks.extensions.plot RUN_DIR``: watch the plots of a run from another process.

Serves the curves of a finished or running experiment from its persisted
log (``RUN_DIR/log.jsonl``) until Ctrl-C; with ``--html FILE`` writes the
static page instead and exits.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence

from bricks.errors import BricksError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bricks.extensions.plot",
        description="Serve live Bokeh plots of a training log (finished or still written).",
    )
    parser.add_argument("run", help="run directory holding log.jsonl, or a log file")
    parser.add_argument(
        "--channels",
        nargs="+",
        metavar="A,B",
        help="channel groups, one figure each, channels separated by commas "
        "(default: every numeric record, train_/valid_ of a quantity together)",
    )
    parser.add_argument("--name", help="document name, the URL path (default: the run's name)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--address", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding an address other machines can reach (anyone there can read the plots)",
    )
    parser.add_argument(
        "--allow-websocket-origin",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="another origin the page may be served from (repeatable)",
    )
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between log reads")
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait for the log's first records (default: don't)",
    )
    parser.add_argument(
        "--html", metavar="FILE", help="write the static page of the log to FILE and exit"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("tornado.access", "bokeh"):  # one line per request / websocket otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    from bricks.extensions.plot._channels import normalize_channels, points_from_rows
    from bricks.extensions.plot._figures import write_static_html
    from bricks.extensions.plot._follow import (
        default_channels,
        default_document_name,
        find_log,
        serve_log,
    )
    from bricks.log import read_log

    try:
        path = find_log(args.run)
        channels = [g.split(",") for g in args.channels] if args.channels else None
        deadline = time.monotonic() + args.wait
        while channels is None:
            found = default_channels(path)
            if found or time.monotonic() >= deadline:
                channels = found or None
                break
            time.sleep(0.5)
        name = args.name or default_document_name(args.run)
        if args.html:
            groups = normalize_channels(channels or [])
            names = [c for g in groups for c in g]
            history: dict[str, tuple[list[int], list[float]]] = {c: ([], []) for c in names}
            for channel, x, y in points_from_rows(read_log(path).items(), names):
                history[channel][0].append(x)
                history[channel][1].append(y)
            print(write_static_html(args.html, name, groups, history))
            return 0
        server = serve_log(
            args.run,
            channels,
            name,
            port=args.port,
            address=args.address,
            allow_remote=args.allow_remote,
            websocket_origins=args.allow_websocket_origin,
            update_interval=args.interval,
        )
    except BricksError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
