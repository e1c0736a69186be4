"""Demo data for musicmap: the demo's real music, freely licensed game soundtracks fetched from
Debian's archive (``data.debian_music``), and the synthetic library used where those cannot be
fetched or with ``musicmap demo --synthetic`` (``data.demo_library``). Imports nothing of ours."""
