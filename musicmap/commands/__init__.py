"""One module per ``musicmap`` subcommand, each with NAME, HELP, add_arguments and run."""

from types import ModuleType

from . import (
    demo,
    dislike,
    doctor,
    export,
    extend,
    find,
    index,
    info,
    ingest,
    like,
    map,
    mix,
    path,
    played,
    serve,
    similar,
    skipped,
    sql,
    tag,
    taste,
)

COMMANDS: tuple[ModuleType, ...] = (index, ingest, map, similar, find, path, extend, mix, like, dislike, played,
                                    skipped, taste, tag, sql, export, serve, demo, info, doctor)
