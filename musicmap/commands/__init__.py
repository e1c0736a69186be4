"""One module per ``musicmap`` subcommand, each with NAME, HELP, add_arguments and run."""

from types import ModuleType

from . import demo, doctor, export, extend, find, index, info, ingest, map, path, serve, similar, sql, tag

COMMANDS: tuple[ModuleType, ...] = (index, ingest, map, similar, find, path, extend, tag, sql, export, serve,
                                    demo, info, doctor)
