"""Cover art by track id (issue #20): each format's embedded picture, a folder image, none, a corrupt one."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from explorer import create_app
from explorer.art import CoverArt
from store import Store, TrackRecord
from tests.audio import write_tone
from tests.fakes import fake_model, write_store

RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 210, 20)


def _picture(colour: tuple[int, int, int], size: tuple[int, int] = (600, 400), kind: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, kind)
    return out.getvalue()


def _id3_picture(data: bytes, kind: int = 3) -> object:
    from mutagen.id3 import APIC

    return APIC(encoding=3, mime="image/jpeg", type=kind, desc="cover" if kind == 3 else "other", data=data)


def _mp3(path: Path, picture: bytes | None) -> Path:
    from mutagen.id3 import ID3, TIT2

    write_tone(path, 2.0, 440.0)
    tags = ID3()
    tags.add(TIT2(encoding=3, text="mp3"))
    if picture is not None:
        tags.add(_id3_picture(_picture(GREEN, (50, 50)), kind=0))  # another picture first: the front cover wins
        tags.add(_id3_picture(picture))
    tags.save(path)
    return path


def _wav(path: Path, picture: bytes) -> Path:
    from mutagen.wave import WAVE

    write_tone(path, 2.0, 440.0, subtype="PCM_16")
    wave = WAVE(path)
    wave.add_tags()
    assert wave.tags is not None
    wave.tags.add(_id3_picture(picture))
    wave.save()
    return path


def _flac(path: Path, picture: bytes) -> Path:
    from mutagen.flac import FLAC, Picture

    write_tone(path, 2.0, 440.0, subtype="PCM_16")
    flac = FLAC(path)
    block = Picture()
    block.type, block.mime, block.data = 3, "image/jpeg", picture
    flac.add_picture(block)
    flac.save()
    return path


def _vorbis_comment(path: Path, picture: bytes) -> Path:
    import mutagen
    from mutagen.flac import Picture

    audio = mutagen.File(path)
    assert audio is not None
    if audio.tags is None:
        audio.add_tags()
    block = Picture()
    block.type, block.mime, block.data = 3, "image/png", picture
    audio.tags["metadata_block_picture"] = [base64.b64encode(block.write()).decode("ascii")]
    audio.save()
    return path


def _ogg(path: Path, picture: bytes, subtype: str) -> Path:
    import soundfile as sf

    from tests.audio import tone

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(2.0, 440.0, sr=48_000), 48_000, format="OGG", subtype=subtype)
    return _vorbis_comment(path, picture)


def _m4a(path: Path, picture: bytes) -> Path:
    from mutagen.mp4 import MP4, MP4Cover

    wav = write_tone(path.with_suffix(".tmp.wav"), 2.0, 440.0, subtype="PCM_16")
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None, "ffmpeg is installed by make test's system step"
    subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", str(path)], check=True)
    wav.unlink()
    mp4 = MP4(path)
    if mp4.tags is None:
        mp4.add_tags()
    assert mp4.tags is not None
    mp4.tags["covr"] = [MP4Cover(picture, imageformat=MP4Cover.FORMAT_JPEG)]
    mp4.save()
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("art")
    files = {
        "mp3": _mp3(root / "a" / "song.mp3", _picture(RED)),
        "wav": _wav(root / "b" / "song.wav", _picture(RED)),
        "flac": _flac(root / "c" / "song.flac", _picture(RED)),
        "ogg": _ogg(root / "d" / "song.ogg", _picture(RED, kind="PNG"), "VORBIS"),
        "opus": _ogg(root / "e" / "song.opus", _picture(RED, kind="PNG"), "OPUS"),
        "m4a": _m4a(root / "f" / "song.m4a", _picture(RED)),
        "folder": write_tone(root / "g" / "song.flac", 2.0, 330.0, subtype="PCM_16"),
        "none": write_tone(root / "h" / "song.flac", 2.0, 220.0, subtype="PCM_16"),
        "corrupt": _mp3(root / "i" / "song.mp3", b"\xff\xd8\xff\xe0 this is not a jpeg at all" * 20),
        "corrupt-folder": write_tone(root / "j" / "song.wav", 2.0, 550.0, subtype="PCM_16"),
    }
    (root / "g" / "Folder.JPG").write_bytes(_picture(BLUE, (900, 900)))  # any case
    (root / "j" / "cover.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return files


@pytest.fixture(scope="module")
def client(library: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    folder = tmp_path_factory.mktemp("art-store") / "store"
    records = [TrackRecord(path=str(path), size=path.stat().st_size, mtime=path.stat().st_mtime,
                           tags={"title": name}, vector=np.eye(16, dtype=np.float32)[i])
               for i, (name, path) in enumerate(library.items())]
    write_store(folder, fake_model(16), records)
    with Store.open(folder) as store:
        yield create_app(store).server.test_client()


def _id(client: FlaskClient, name: str) -> int:
    found = client.get("/api/v1/tracks", query_string={"where": f"title = '{name}'"}).get_json()["results"]
    return int(found[0]["id"])


def _colour(data: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(data)) as image:
        pixel = np.asarray(image.convert("RGB"), float).reshape(-1, 3).mean(axis=0)
    return int(pixel[0]), int(pixel[1]), int(pixel[2])


@pytest.mark.parametrize("name", ["mp3", "wav", "flac", "ogg", "opus", "m4a"])
def test_the_embedded_picture_of_every_format_as_a_thumbnail(client: FlaskClient, name: str) -> None:
    response = client.get(f"/api/v1/art/{_id(client, name)}?size=64")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.headers["X-Musicmap-Art"] == "embedded"
    with Image.open(io.BytesIO(response.data)) as image:
        assert max(image.size) == 64 and image.size == (64, 43)  # 600 × 400 kept in proportion
    assert np.allclose(_colour(response.data), RED, atol=12)  # the front cover, not the other picture


def test_a_folder_image_beside_the_file(client: FlaskClient) -> None:
    response = client.get(f"/api/v1/art/{_id(client, 'folder')}?size=100")
    assert response.status_code == 200 and response.headers["X-Musicmap-Art"] == "folder"
    assert np.allclose(_colour(response.data), BLUE, atol=12)


@pytest.mark.parametrize("name", ["none", "corrupt", "corrupt-folder"])
def test_no_picture_or_a_corrupt_one_gets_the_placeholder(client: FlaskClient, name: str) -> None:
    response = client.get(f"/api/v1/art/{_id(client, name)}")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert response.headers["X-Musicmap-Art"] == "none" and b"<svg" in response.data


def test_art_is_by_id_cached_and_checked(client: FlaskClient) -> None:
    url = f"/api/v1/art/{_id(client, 'flac')}"
    first = client.get(url)
    assert first.headers["ETag"] and "max-age" in first.headers["Cache-Control"]
    again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and not again.data
    for bad in ("size=8", "size=5000", "size=x", "colour=red"):
        response = client.get(f"{url}?{bad}")
        assert response.status_code == 400 and bad.split("=")[0] in response.get_json()["error"]
    missing = client.get("/api/v1/art/99999")
    assert missing.status_code == 404 and "99999" in missing.get_json()["error"]
    assert client.get("/api/v1/art/..%2F..%2Fetc%2Fpasswd").status_code == 404  # ids only, never paths


def test_a_changed_picture_is_read_again(tmp_path: Path) -> None:
    song = write_tone(tmp_path / "x" / "song.flac", 1.0, 440.0, subtype="PCM_16")
    (tmp_path / "x" / "cover.jpg").write_bytes(_picture(GREEN))
    art = CoverArt()
    assert np.allclose(_colour(art.get(1, str(song), 48).data), GREEN, atol=12)
    (tmp_path / "x" / "cover.jpg").write_bytes(_picture(YELLOW))
    os.utime(tmp_path / "x" / "cover.jpg", ns=(1, 10**18))  # a new mtime even on a coarse clock
    assert np.allclose(_colour(art.get(1, str(song), 48).data), YELLOW, atol=12)


def _cover(client: FlaskClient, art_id: str, **extra: object) -> tuple[int, str, bytes]:
    response = client.get("/rest/getCoverArt", query_string={"u": "player", "p": "x", "v": "1.16.1", "c": "test",
                                                              "f": "json", "id": art_id, **extra})
    return response.status_code, response.mimetype, response.data


@pytest.mark.parametrize("name", ["mp3", "m4a", "opus", "folder"])
def test_opensubsonic_cover_art_by_song_album_and_artist(client: FlaskClient, name: str) -> None:
    """``getCoverArt`` (issue #32): the ``coverArt`` ids that ``getSong``/``getAlbum``/``getArtist``
    hand out, as JPEGs of the asked size (never enlarged), from the same cache as the explorer."""
    song = client.get("/rest/getSong", query_string={"u": "player", "p": "x", "f": "json", "id": _id(client, name)})
    child = song.get_json()["subsonic-response"]["song"]
    for art_id in (child["coverArt"], child["albumId"]):
        status, mimetype, data = _cover(client, art_id, size=48)
        assert status == 200 and mimetype == "image/jpeg", data[:200]
        with Image.open(io.BytesIO(data)) as image:
            assert max(image.size) == 48
        assert np.allclose(_colour(data), BLUE if name == "folder" else RED, atol=12)
    status, _, data = _cover(client, child["coverArt"])  # no size: as it is, up to 1,200 px
    with Image.open(io.BytesIO(data)) as image:
        assert status == 200 and image.size == ((900, 900) if name == "folder" else (600, 400))


def test_opensubsonic_cover_art_that_is_not_there(client: FlaskClient) -> None:
    for art_id in (str(_id(client, "none")), str(_id(client, "corrupt")), "99999", "al-nope", "ar-nope",
                   "../../etc/passwd", "al-../../etc/passwd", "9" * 40):
        status, mimetype, data = _cover(client, art_id, size=64)
        assert status == 200 and mimetype == "application/json", art_id
        assert b'"code": 70' in data or b'"code":70' in data, data
    status, _, data = _cover(client, str(_id(client, "flac")), size="big")
    assert b'"code": 0' in data or b'"code":0' in data
