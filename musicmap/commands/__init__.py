"""One module per ``musicmap`` subcommand, each with NAME, HELP, add_arguments and run."""

from types import ModuleType

from . import demo, doctor, export, index, info, ingest, map, serve, similar, sql

COMMANDS: tuple[ModuleType, ...] = (index, ingest, map, similar, sql, export, serve, demo, info, doctor)
