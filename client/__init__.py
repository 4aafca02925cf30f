"""Paintbridge's editor-independent client core, shared by the Krita and GIMP plugins (vendored next to ``protocol/``).

Modules: ``modes`` (which box a mode reads, mask or not), ``settings`` (job options, persistence format, defaults from
``welcome``), ``jobs`` (settings + pixels → job), ``live`` (the live scheduler), ``results`` (layer names, placement),
``server`` (address rules, recorded server command, launcher), ``session`` (connection lifecycle), ``errors``.
Pure Python; imports only the standard library and ``protocol`` (found by ``wire``). See README.md.
"""

__version__ = "0.2.0"
