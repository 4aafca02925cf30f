"""The server's styles: human-editable JSON files, one style per file, in the user's styles folder, over a small set
shipped with the server (``configs/styles``). A saved style with a shipped one's name hides it; deleting the saved copy
brings the shipped one back. A file that does not read as a style is reported (file, field, message) and the others
still load. Files are read again on every listing, so an edit by hand shows up without a restart."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from protocol.errors import BAD_REQUEST, ProtocolError
from protocol.messages import Limits
from protocol.styles import MAX_STYLES, STYLE_NAME_PATTERN, Style, StyleProblem

log = logging.getLogger("paintbridge.styles")

SHIPPED_DIR = Path(__file__).resolve().parent / "configs" / "styles"
SUFFIX = ".json"
MAX_FILE_BYTES = 256 * 1024  # a style is a few hundred bytes; anything this big is not one
_NAME = re.compile(STYLE_NAME_PATTERN)


@dataclass(frozen=True)
class Listing:
    """What the styles folders hold now: the styles by name, and the files that did not load."""

    styles: Tuple[Style, ...]
    problems: Tuple[StyleProblem, ...]


def read_style(path: Path, builtin: bool = False) -> Style:
    """The style in ``path``; ``ProtocolError`` (bad_request) naming the field when it is not one. A file without a
    ``name`` takes its file name's."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ProtocolError(BAD_REQUEST, f"is {size} bytes, more than a style's {MAX_FILE_BYTES}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ProtocolError(BAD_REQUEST, f"is not UTF-8 text: {err}") from None
    except json.JSONDecodeError as err:
        raise ProtocolError(BAD_REQUEST, f"is not JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    if isinstance(data, dict) and "name" not in data:
        data = dict(data, name=path.stem)
    style = Style.parse_map(data, "", Limits())
    return replace(style, builtin=builtin)


class StyleStore:
    """Styles in ``folder`` (the user's, written by ``save``) over those in ``shipped`` (read-only)."""

    def __init__(self, folder: Path, shipped: Optional[Path] = SHIPPED_DIR) -> None:
        self.folder = Path(folder).expanduser()
        self.shipped = shipped
        self._lock = threading.Lock()

    def _read_folder(self, folder: Optional[Path], builtin: bool) -> Tuple[Dict[str, Tuple[Style, Path]], list]:
        found: Dict[str, Tuple[Style, Path]] = {}
        problems: List[StyleProblem] = []
        if folder is None or not folder.is_dir():
            return found, problems
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() != SUFFIX or path.name.startswith(".") or not path.is_file():
                continue
            where = path.name if not builtin else f"(shipped) {path.name}"
            try:
                style = read_style(path, builtin)
            except ProtocolError as err:
                problems.append(StyleProblem(where, err.field or "", err.message[:4096]))
                continue
            except OSError as err:
                problems.append(StyleProblem(where, "", f"cannot be read: {err}"[:4096]))
                continue
            if style.name in found:
                other = found[style.name][1].name
                problems.append(StyleProblem(where, "name", f"'{style.name}' is already the name of {other}"))
                continue
            found[style.name] = (style, path)
        return found, problems

    def _read(self) -> Tuple[Dict[str, Tuple[Style, Path]], List[StyleProblem]]:
        shipped, shipped_problems = self._read_folder(self.shipped, True)
        user, problems = self._read_folder(self.folder, False)
        for problem in shipped_problems:  # a broken shipped file is a bug of this server: the log says so too
            log.error("shipped style %s: %s %s", problem.file, problem.field, problem.message)
        merged = {**shipped, **user}
        return merged, shipped_problems + problems

    def listing(self) -> Listing:
        """Every style that loads (sorted by name) and every file that does not."""
        with self._lock:
            merged, problems = self._read()
        styles = tuple(merged[name][0] for name in sorted(merged, key=str.lower))[:MAX_STYLES]
        for problem in problems:
            log.debug("style file %s did not load: %s %s", problem.file, problem.field, problem.message)
        return Listing(styles, tuple(problems[:MAX_STYLES]))

    def get(self, name: str) -> Style:
        """The style called ``name``; bad_request naming ``style`` when there is none (or its file is broken)."""
        with self._lock:
            merged, problems = self._read()
        if name in merged:
            return merged[name][0]
        broken = [p for p in problems if Path(p.file.replace("(shipped) ", "")).stem == name]
        why = f": its file {broken[0].file} did not load ({broken[0].field} {broken[0].message})" if broken else ""
        have = ", ".join(sorted(merged, key=str.lower)) or "none"
        raise ProtocolError(BAD_REQUEST, f"no style named '{name}'{why}; styles: {have}", field="style")

    def save(self, style: Style) -> None:
        """Write ``style`` to ``<folder>/<name>.json`` (replacing the user's style of that name)."""
        data = replace(style, builtin=False).to_wire()
        data.pop("builtin", None)
        with self._lock:
            existing, _ = self._read_folder(self.folder, False)
            old = existing.get(style.name, (None, None))[1]
            self.folder.mkdir(parents=True, exist_ok=True)
            target = self.folder / f"{style.name}{SUFFIX}"
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(tmp, target)
            if old is not None and old != target:  # it was kept under another file name
                old.unlink(missing_ok=True)

    def delete(self, name: str) -> None:
        """Remove the user's style ``name``; a shipped one (not hidden by a saved copy) cannot be."""
        with self._lock:
            user, _ = self._read_folder(self.folder, False)
            if name in user:
                user[name][1].unlink()
                return
            shipped, _ = self._read_folder(self.shipped, True)
        if name in shipped:
            raise ProtocolError(
                BAD_REQUEST,
                f"style '{name}' is shipped with the server and cannot be deleted (save a changed copy instead)",
                field="name",
            )
        raise ProtocolError(BAD_REQUEST, f"no saved style named '{name}'", field="name")

    def default_names(self, families) -> Dict[str, str]:
        """Per model family, the style a plugin selects first: the shipped ``<family>-general`` when it loads."""
        names = {s.name for s in self.listing().styles}
        return {f: f"{f}-general" for f in families if f"{f}-general" in names}
