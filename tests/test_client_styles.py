"""Editing styles through the client core against a real server: new, duplicate, rename, delete, each refusal named."""

from __future__ import annotations

import pytest

from client import styles as cs
from client.errors import JobInputError
from protocol.client import Client


def names(styles) -> set:
    return {s.name for s in styles}


def test_new_duplicate_rename_delete(start_server, tmp_path):
    folder = tmp_path / "styles"
    server = start_server(styles_dir=folder)
    with Client(server.url, client_name="test-styles") as client:
        shipped = names(client.list_styles().styles)
        assert "sd15-photo" in shipped
        made = cs.new(client, " mine ", family="sd15")
        assert cs.find(made, "mine").family == "sd15" and (folder / "mine.json").is_file()
        copy = cs.find(cs.duplicate(client, "sd15-photo", "my photo"), "my photo")
        original = cs.find(client.list_styles().styles, "sd15-photo")
        assert (copy.checkpoints, copy.loras, copy.builtin) == (original.checkpoints, original.loras, False)
        after = cs.rename(client, "my photo", "photo 2")
        assert "photo 2" in names(after) and "my photo" not in names(after)
        assert cs.find(after, "photo 2").checkpoints == original.checkpoints
        assert not (folder / "my photo.json").exists() and (folder / "photo 2.json").is_file()
        assert names(cs.delete(client, "photo 2")) == shipped | {"mine"}
        with pytest.raises(JobInputError, match="shipped with the server and cannot be renamed"):
            cs.rename(client, "sd15-photo", "other")
        with pytest.raises(JobInputError, match="already a style named 'mine'"):
            cs.duplicate(client, "sd15-photo", "mine")
        with pytest.raises(JobInputError, match="no style named 'nope'"):
            cs.delete(client, "nope")
        with pytest.raises(JobInputError, match="shipped with the server and cannot be deleted"):
            cs.delete(client, "sd15-photo")
        with pytest.raises(JobInputError, match="cannot name a style"):
            cs.new(client, "../escape")
        assert names(client.list_styles().styles) == shipped | {"mine"}, "nothing changed by a refusal"


def test_the_automatic_style_is_the_one_the_server_suggests_for_the_models_family():
    import protocol
    from client.settings import Defaults, Settings, apply_defaults

    welcome = protocol.Welcome(protocol="1.1", server_version="t", defaults={"styles": {"sd15": "sd15-general"}})
    defaults = Defaults.from_welcome(welcome)

    def style(chosen: str, entry) -> str:
        return apply_defaults(Settings(style=chosen), defaults, entry).style

    assert style(cs.AUTO, {"name": "dream", "arch": "sd15"}) == "sd15-general"
    assert style(cs.AUTO, {"name": "big", "arch": "sdxl"}) == ""  # none suggested for SDXL here
    assert style(cs.AUTO, {"name": "classical", "kind": "builtin"}) == ""  # no family, no style
    assert style("mine", {"arch": "sd15"}) == "mine" and style("", {"arch": "sd15"}) == ""
