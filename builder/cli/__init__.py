"""The `airbuild` command line: grammar, commands, output.

Public: `main` (main: the entry point), `parser` (make_parser), `commands` (one function per
command), `output` (tables), `junit` (write_junit).
"""
