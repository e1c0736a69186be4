"""Serve the explorer: the map, hover details, playback and similar tracks, in the browser.

Runs under waitress (a production WSGI server, several threads) and binds 127.0.0.1 by default
(only this machine can connect).
"""

from __future__ import annotations

import argparse
import logging

from store import Store

from ..errors import UserError
from ..settings import Settings, help_for
from ._common import add_store

NAME = "serve"
HELP = "serve the explorer web app"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store(p)
    p.add_argument("--host", help=help_for("host"))
    p.add_argument("--port", type=int, help=help_for("port"))


THREADS = 8
"""waitress worker threads: audio streams hold one each while the page keeps working."""


def serve(store: Store, host: str, port: int) -> None:
    """Run the explorer over ``store`` until Ctrl-C."""
    from waitress import create_server

    from explorer import create_app

    app = create_app(store)
    try:
        server = create_server(app.server, host=host, port=port, threads=THREADS, ident="musicmap")
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    logger.info("musicmap explorer on http://%s:%d/  (Ctrl-C to stop)", host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("binding %s: anyone who can reach this address can browse and play the library", host)
    try:
        server.run()
    finally:
        server.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    with Store.open(settings.store, shared=True) as store:  # holds the file only while reading: `index` can run
        serve(store, settings.host, settings.port)
    return 0
