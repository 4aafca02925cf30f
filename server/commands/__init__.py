"""The ``paintbridge`` subcommands, one module each: ``serve`` (and ``serve --cluster``), ``worker``, ``calibrate``,
``run`` and ``models`` (with ``models pull``); ``common``: what they share. ``server/cli.py`` holds the parser and
dispatch."""
