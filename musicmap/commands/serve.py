"""Serve the explorer: the map, hover details, playback and similar tracks, in the browser.

Runs under waitress (a production WSGI server, several threads) and binds 127.0.0.1 by default
(only this machine can connect). With --allow-upload, visitors can drop an audio clip on the page
(or POST one to /api/v1/similar/upload) to find tracks like it: the clip is embedded with the
store's own model, placed on the map, and deleted; the model is loaded when the server starts.

With --no-record, nothing the page or the API sends (👍/👎, plays, skips) is written to the
listening journal; what it holds still steers the lists.

examples:
  musicmap serve --store ~/music-store
  musicmap serve --no-record
  musicmap serve --allow-upload --max-upload-mb 20
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import threading
from pathlib import Path

import numpy as np

from explorer.limits import MAX_UPLOAD_MB, MAX_UPLOAD_SECONDS
from explorer.upload import EmbedFn, PlaceFn, UploadError
from store import Store

from .. import exits
from ..errors import UserError
from ..settings import Settings, help_for
from ._common import add_store, store_embedder

NAME = "serve"
HELP = "serve the explorer web app"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store(p)
    p.add_argument("--host", help=help_for("host"))
    p.add_argument("--port", type=int, help=help_for("port"))
    p.add_argument("--token", help=help_for("token"))
    p.add_argument("--insecure", action="store_true",
                   help="serve a --host other than loopback without a token (anyone who can reach it can browse, "
                        "play and query the library)")
    p.add_argument("--allow-upload", dest="allow_upload", action="store_true",
                   help="let visitors upload an audio clip to find similar tracks (embedded with the store's "
                        "model, never kept)")
    p.add_argument("--no-record", dest="no_record", action="store_true",
                   help="record no listening events (the page's 👍/👎 and plays, POST /api/v1/events answer 403); "
                        "what was recorded before still steers the lists")
    p.add_argument("--max-upload-mb", dest="max_upload_mb", type=float, default=MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest upload accepted (default: {MAX_UPLOAD_MB})")


THREADS = 8
"""waitress worker threads: audio streams hold one each while the page keeps working."""


def upload_functions(store: Store, settings: Settings) -> tuple[EmbedFn, PlaceFn]:
    """``embed(path)`` with the store's model (content-checked, decoded as a stream, at most
    :data:`MAX_UPLOAD_SECONDS`) and ``place(map, vectors)`` into the store's maps, for uploads."""
    from indexer.decode import iter_audio
    from indexer.errors import FileFailure
    from indexer.mapping.placement import Placer
    from indexer.scan import audio_suffix

    embedder = store_embedder(store, settings)
    lock = threading.Lock()  # one clip through the model at a time: bounded memory under load

    def embed(path: Path) -> np.ndarray:
        suffix = audio_suffix(path)
        if suffix is None:
            raise UploadError("not an audio file: its first bytes are not those of an audio format musicmap reads "
                              "(mp3, flac, ogg/opus, m4a, wav, aiff, wma)")
        if not path.suffix:  # decode by what it is (soundfile for flac/wav/ogg, as the indexer did)
            path = path.rename(path.with_suffix(suffix))
        limit = MAX_UPLOAD_SECONDS * embedder.sample_rate
        blocks, total = [], 0
        try:
            for block in iter_audio(path, embedder.sample_rate):
                total += len(block)
                if total > limit:
                    raise UploadError(f"the clip is longer than {MAX_UPLOAD_SECONDS // 60} minutes; "
                                      "upload a shorter excerpt")
                blocks.append(block)
        except FileFailure as exc:
            raise UploadError(f"could not decode the file: {exc.reason}") from None
        with lock:
            return embedder.embed(np.concatenate(blocks)).vector

    return embed, Placer(store)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_exposure(host: str, token: str, insecure: bool) -> None:
    """A --host other than loopback needs a token, or --insecure said out loud."""
    if host in LOOPBACK or host.startswith("127.") or token:
        return
    if not insecure:
        raise UserError(f"--host {host} lets other machines reach the explorer: give a secret with --token "
                        "(or MUSICMAP_TOKEN) that every visitor must send, or add --insecure to serve without one")
    logger.warning("--insecure: %s is served WITHOUT a token; anyone who can reach it can browse, play and query "
                   "the library", host)


def serve(store: Store, host: str, port: int, *, embed: EmbedFn | None = None, place: PlaceFn | None = None,
          max_upload_mb: float = MAX_UPLOAD_MB, token: str = "", record: bool = True) -> None:
    """Run the explorer over ``store`` until Ctrl-C (uploads when ``embed`` is given; ``token``
    required of every request when given; listening events recorded unless ``record`` is False)."""
    from waitress import create_server

    from explorer import create_app

    app = create_app(store, embed, place=place, max_upload_bytes=int(max_upload_mb * 1_000_000), token=token or None,
                     record=record)
    try:
        server = create_server(app.server, host=host, port=port, threads=THREADS, ident="musicmap")
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    shown = "localhost" if host in LOOPBACK else host
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is N" under any load
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>`: every thread's stack on stderr, for a stuck server
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    logger.info("musicmap explorer on http://%s:%d/%s  (Ctrl-C to stop)", shown, port,
                "?token=<your token>" if token else "")
    _warm(store)
    try:
        server.run()
    finally:
        server.close()


def _warm(store: Store) -> None:
    """Read the sound tags in the background while the server starts answering (3.8 s for 100 tags
    at 100k tracks), so that the first search by sound does not wait for them; a failure only means
    that the first search reads its own (logged at debug). Here, not in ``create_app``: a store
    closed under it by its owner (a test, a notebook) would be closed while the thread reads."""
    def run() -> None:
        try:
            store.warm_sound_tags()
        except Exception:  # a file busy meanwhile: the first search reads its tags itself
            logger.debug("sound tags not preloaded", exc_info=True)

    threading.Thread(target=run, name="musicmap-warm-tags", daemon=True).start()


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not args.max_upload_mb > 0:
        raise UserError(f"--max-upload-mb {args.max_upload_mb}: give a size above 0")
    check_exposure(settings.host, settings.token, args.insecure)
    with Store.open(settings.store, shared=True) as store:  # holds the file only while reading: `index` can run
        embed = place = None
        if args.allow_upload:
            embed, place = upload_functions(store, settings)  # a wrong model path fails here, not on the first upload
            logger.info("uploads on: clips up to %g MB are embedded with %s and deleted", args.max_upload_mb,
                        store.manifest.model.label)
        if args.no_record:
            logger.info("--no-record: listening events are not recorded")
        serve(store, settings.host, settings.port, embed=embed, place=place, max_upload_mb=args.max_upload_mb,
              token=settings.token, record=not args.no_record)
    return exits.OK
