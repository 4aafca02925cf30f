"""Paintbridge's Krita plugin: the pykrita package ``paintbridge`` and its installer (``krita_plugin.installer``)."""
