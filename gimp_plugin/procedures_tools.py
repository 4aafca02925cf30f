"""The procedures beside the modes: Download Models, History, Describe (a prompt from the picture) and Styles."""

from __future__ import annotations

from client.settings import CAPTION_STYLE_LABELS, CAPTION_STYLES

from .argchoices import FOR_CHOICES, HISTORY_ACTIONS, STYLE_ACTIONS
from .args_inputs import server_args, source_args
from .argspec import PREFIX, Arg, ProcedureSpec

DOWNLOAD = ProcedureSpec(
    PREFIX + "download-models",
    "pull",
    "_Download Models...",
    "Paintbridge: Download Models",
    "Download a starter set of models onto the server's machine",
    "Shows which starter set (preset) the server has complete and what it lacks for the chosen mode or control type, "
    "and downloads the named presets (or catalogue files) through the server, with progress; files that are already "
    "there are kept, a cancelled download continues where it stopped next time. The files land on the server's "
    "machine, also for a remote server.",
    (
        Arg(
            "names",
            "string",
            "_Presets to download",
            "Preset names or catalogue file ids, separated by commas or spaces (e.g. 'sd15' or 'upscaler annotators')",
            "",
        ),
        Arg(
            "for",
            "choice",
            "Show what is missing _for",
            "Which mode or control type the list above is about",
            "all",
            choices=FOR_CHOICES,
        ),
    )
    + server_args(),
    download=True,
)
# results history
HISTORY = ProcedureSpec(
    PREFIX + "history",
    "history",
    "_History...",
    "Paintbridge: History",
    "Earlier results of this image: apply again, reuse their settings, delete",
    "Every Paintbridge result made for this image is kept inside it (saved with the .xcf), within a size limit: "
    "the dialog lists them with thumbnails and settings, and searches them. Scripts pick an entry by index (0 = the "
    "newest of those 'search' finds) and an action; 'list' returns the entries as JSON, 'reuse' returns the entry's "
    "settings as JSON.",
    (
        Arg("action", "choice", "_Action", "What to do with the entry", "apply", choices=HISTORY_ACTIONS),
        Arg(
            "index",
            "int",
            "_Entry",
            "Which entry: 0 = the newest, 1 = the one before ... (among those the search finds)",
            0,
            0,
            10000,
        ),
        Arg("layer", "int", "_Layer", "Apply again: which of the entry's layers (-1 = all of them)", -1, -1, 1000),
        Arg(
            "limit-mb",
            "int",
            "_Keep at most (MB)",
            "How many MB of results each image keeps (the oldest go first; 0 = no history); -1 = leave as it is",
            -1,
            -1,
            100000,
        ),
        Arg(
            "search",
            "string",
            "_Find",
            "Only the entries that match: words of the prompt, the model, a seed, the "
            "mode or the date (every word must match; prompt:, model:, mode:, seed:, date: name a field, "
            "date:>2026-12-01 from a day on); empty = all",
            "",
        ),
    ),
    history=True,
)
# prompt from the picture: the words fill the prompt of the next run of a procedure that takes a description
DESCRIBE = ProcedureSpec(
    PREFIX + "describe",
    "caption",
    "_Describe...",
    "Paintbridge: Describe",
    "Describe the selection (or the whole image) as a prompt to start from",
    "Asks the server's captioner (Download Models › 'captioner') for words that describe the selection's bounds, or "
    "the whole image without a selection: a sentence, or comma-separated tags. The words are shown, returned to "
    "scripts ('caption'), and fill the prompt of the next Paintbridge run: its dialog opens with them, and a script "
    "that runs a procedure with an empty prompt gets them.",
    (
        Arg(
            "caption-style",
            "choice",
            "_Style",
            "A sentence, or comma-separated tags",
            CAPTION_STYLES[0],
            choices=tuple((style, CAPTION_STYLE_LABELS[style]) for style in CAPTION_STYLES),
        ),
        Arg("captioner", "string", "_Captioner", "A captioner of the server by name; empty = its first", ""),
    )
    + source_args(mask=False)
    + server_args(),
)
# the server's styles
STYLES = ProcedureSpec(
    PREFIX + "styles",
    "styles",
    "St_yles...",
    "Paintbridge: Styles",
    "The server's styles: new, duplicate, rename, delete",
    "Styles bundle a checkpoint preference, LoRAs, VAE, sampling and prompt templates; the server keeps them, so "
    "Krita and GIMP (and every machine using the server) share them. The window lists them and makes new ones, "
    "duplicates, renames and deletes them; shipped styles can be duplicated, not renamed or deleted. Scripts pick an "
    "action on 'style'; every action returns the styles after it as JSON ('styles').",
    (
        Arg("action", "choice", "_Action", "What to do", "list", choices=STYLE_ACTIONS),
        Arg("style", "string", "_Style", "The style to act on (new: the new style's name)", ""),
        Arg("new-name", "string", "New _name", "Duplicate and rename: the name it gets", ""),
        Arg("family", "string", "_Family", "New: the model family it is for (sd15, sdxl, flux...); empty = any", ""),
    )
    + server_args(),
    styles=True,
)
