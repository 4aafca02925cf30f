"""Paintbridge's Krita plugin: the pykrita package ``paintbridge`` (installed by ``pbsetup.plugins.install_krita``)."""
