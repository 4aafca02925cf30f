"""The parts of ``install.py`` (standard library only; runs on Python 3.10+, the server itself needs 3.11+).

- ``system``: what the installer may look at and change, gathered in one object tests can fake (platform, HOME,
  environment, programs on PATH, command output, network reachability, free disk space).
- ``hosts``: where Krita's ``pykrita`` and GIMP 3's ``plug-ins`` folders are on Linux (plain, Flatpak, Snap), Windows
  and macOS, and whether each application is there at all.
- ``torchbuild``: which PyTorch build fits the hardware (CUDA, ROCm, XPU, MPS, CPU) and from which package index.
- ``plan``: the list of actions an install or uninstall takes, printed for ``--dry-run`` or carried out.
- ``record``: the JSON record of what was installed, so a second run upgrades in place and ``--uninstall`` removes
  exactly that.
- ``uvpip``: ``--uv``, installing with uv while carrying pip's own settings over to it.
- ``checks``: the clear messages for what can stop an install (Python, disk space, network, unwritable folders).
"""
