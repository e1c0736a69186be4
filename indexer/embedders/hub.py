"""The Hugging Face hub as the MAEST loader meets it: what is cached, whether the hub answers,
and the hub client kept quiet while it works.

Why this exists (issue #29): on a machine that cannot reach the hub, ``from_pretrained`` spends
about 30 s in the hub client's retries (1+2+4+8+8 s of back-off, longer when the host takes
connections and never answers) and prints every retry before it fails. The loader therefore asks
the local cache first (:func:`cached_snapshot`: no network at all), then, only when the weights
are not there, asks the hub once with a short deadline (:func:`probe`) and says what is wrong in
musicmap's own words at once. :func:`quiet_hub_client` keeps the client's log lines, warnings and
progress bars off the terminal during the load itself (``-v`` lets them through).
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

PROBE_SECONDS = 4.0
"""How long the hub may take to answer one request before it counts as unreachable: a hub that
answers at all answers a HEAD within a second; the hub client's own wait is 10 s a try, 6 tries."""

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
"""The files ``from_pretrained`` reads the weights from (one of them is enough)."""

HUB_LOGGERS = ("huggingface_hub", "transformers", "httpx2", "httpx", "httpcore")
"""The loggers of the hub client, its HTTP library (``httpx2`` is the fork it uses here; it logs every
request at INFO) and transformers, which calls it."""


def endpoint() -> str:
    """The hub's base URL as the hub client uses it (``HF_ENDPOINT``, else https://huggingface.co)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def cache_folder() -> Path:
    """The folder the hub client caches models in (``HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def is_hub_id(name: str) -> bool:
    """Whether ``name`` has the form of a hub id (``name`` or ``namespace/name``, letters, digits,
    ``-_.``): a mistyped local path is not asked of the hub or its cache."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def cached_snapshot(repo_id: str, revision: str) -> Path | None:
    """The local snapshot folder of ``repo_id`` at ``revision`` when its config and weights are
    both in the hub client's cache, else None. Reads files only: no network.

    ``revision`` is a branch or tag the cache has a ref for (``main``) or a commit hash, resolved
    as the hub client resolves it (``refs/<revision>`` → ``snapshots/<commit>/``).
    """
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if not isinstance(config, str):  # None (not cached) or the "known not to exist" marker
        return None
    for name in WEIGHT_FILES:
        if isinstance(try_to_load_from_cache(repo_id, name, revision=revision), str):
            return Path(config).parent
    return None


def _unwrapped(exc: BaseException) -> BaseException:
    """urllib wraps the socket's error in a ``URLError``: the socket's error."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        inner = exc.reason
        return inner if isinstance(inner, BaseException) else OSError(str(inner))
    return exc


def _answered(exc: BaseException) -> bool:
    """Whether the host answered, though not as the probe expected: a TLS handshake it failed
    (urllib checks certificates against the system's store, the hub client against certifi's:
    that difference is not the hub's absence) or something that is not HTTP. The hub client
    decides about those, and musicmap reports what it says."""
    return isinstance(_unwrapped(exc), (ssl.SSLError, http.client.HTTPException))


def _reason(exc: BaseException, host: str, seconds: float) -> str:
    """Why a request to the hub failed, in a few words (no resolver's or client's jargon)."""
    exc = _unwrapped(exc)
    if isinstance(exc, socket.gaierror):
        return f"DNS finds no address for {host}"
    if isinstance(exc, ConnectionRefusedError):
        return f"{host} refused the connection"
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return f"{host} gave no answer within {seconds:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{host}: {exc.strerror.lower()}"
    return f"{host}: {str(exc).strip() or type(exc).__name__}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer: the probe needs no more than that."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def probe(url: str, *, seconds: float = PROBE_SECONDS) -> str | None:
    """Ask ``url`` once (HEAD, no retries, through the same proxies the hub client uses) and
    return None when anything answers (any HTTP status, a failed TLS handshake, a reply that is
    not HTTP), else why not in a few words: the host name does not resolve, the connection is
    refused, no answer within ``seconds``.

    The whole probe, name resolution included (which a socket timeout does not bound), ends
    within ``seconds``: it runs in a daemon thread that is left behind if it overruns.
    """
    host = urllib.parse.urlsplit(url).hostname or url
    outcome: list[str | None] = []

    def ask() -> None:
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(urllib.request.Request(url, method="HEAD"), timeout=seconds):
                outcome.append(None)
        except urllib.error.HTTPError:  # 3xx, 4xx, 5xx: the hub is there
            outcome.append(None)
        except ValueError:  # urllib: "unknown url type"
            outcome.append("not an http(s) URL")
        except Exception as exc:  # URLError, OSError, ssl and http.client errors
            outcome.append(None if _answered(exc) else _reason(exc, host, seconds))

    thread = threading.Thread(target=ask, name="musicmap-hub-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        return f"{host} gave no answer within {seconds:g} s"
    return outcome[0]


@contextmanager
def quiet_hub_client() -> Iterator[None]:
    """Keep the hub client's (and transformers') log lines and Python warnings off the terminal
    inside the block; musicmap's own loggers are untouched. At ``-v`` (this module's logger on
    DEBUG) nothing is hidden, for whoever debugs a download."""
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    import huggingface_hub  # noqa: F401  (their logging configures itself on import: before ours)
    import transformers  # noqa: F401

    loggers = [logging.getLogger(name) for name in HUB_LOGGERS]
    levels = [one.level for one in loggers]
    for one in loggers:
        one.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for one, level in zip(loggers, levels, strict=True):
            one.setLevel(level)
