"""The label grammar and label normalization maps, in one place.

Intent/slot labels look like ``"\\nIntent: iot_coffee\\nSlots: device_type(coffee machine)"``
(``Slots: None`` when empty). Two views of them live here:

* :func:`parse_intent_slot` — the scoring view, exactly as defined for evaluation
  (lowercased intent, multiset of ``(type, value)`` pairs); :func:`format_intent_slot` writes
  the label (``prepare``).
* :func:`parse_label_layout` / :meth:`LabelLayout.format` — the structural view used by
  ``translate``: it keeps the label's layout, intent name and slot types verbatim so that only
  slot values change.

Normalization maps (``{canonical: [variants…]}``) fold grammatical variants such as
positiva/positivt → positiv.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.io import loads_strict, read_text

# ---------------------------------------------------------------------------------------------
# Intent/slot grammar: scoring view

_SLOT_ITEM = re.compile(r"^([^()]+?)\s*\((.*)\)$", re.DOTALL)
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class IntentSlot:
    """A parsed intent/slot label: ``intent`` is None when absent."""

    intent: str | None
    slots: tuple[tuple[str, str], ...] = ()

    @property
    def slot_counter(self) -> Counter:
        return Counter(self.slots)


def split_outside_parens(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` where it is not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_slots(text: str) -> list[tuple[str, str]]:
    """``type(value), …`` → ``[(type, value)]`` with the evaluation's normalisation."""
    if not text.strip() or text.strip().lower() == "none":
        return []
    out = []
    for item in split_outside_parens(text):
        m = _SLOT_ITEM.match(item.strip())
        if not m:
            continue  # items that don't match are dropped
        stype = m.group(1).strip().lower()
        value = _WS.sub(" ", m.group(2)).strip().lower()
        if stype:
            out.append((stype, value))
    return out


def parse_intent_slot(text: str | None) -> IntentSlot:
    """Parse a gold label or a generated text by the evaluation definitions.

    intent: text after the first ``Intent:`` up to the next newline or ``Slots:``, stripped and
    lowercased (None only when there is no ``Intent:``). slots: text after the first ``Slots:``, split on commas
    outside parentheses; each ``type(value)`` item becomes ``(type, value)``.
    """
    text = text or ""
    intent = None
    i = text.find("Intent:")
    if i >= 0:
        rest = text[i + len("Intent:") :]
        cut = len(rest)
        for stop in ("\n", "Slots:"):
            j = rest.find(stop)
            if j >= 0:
                cut = min(cut, j)
        intent = rest[:cut].strip().lower()  # "Intent:" with nothing after it: "" (a wrong intent)
    slots: list[tuple[str, str]] = []
    k = text.find("Slots:")
    if k >= 0:
        slots = parse_slots(text[k + len("Slots:") :])
    return IntentSlot(intent, tuple(slots))


def format_intent_slot(intent: str, slots: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> str:
    """The NeMo label string ``"\\nIntent: INTENT\\nSlots: type(value), …"`` (``Slots: None``
    when empty): what ``prepare`` writes and :func:`parse_intent_slot` reads back."""
    body = ", ".join(f"{t}({v})" for t, v in slots) if slots else "None"
    return f"\nIntent: {intent}\nSlots: {body}"


def looks_like_intent_slot(text: object) -> bool:
    return isinstance(text, str) and "Intent:" in text


# ---------------------------------------------------------------------------------------------
# Intent/slot grammar: structural view (for translate)

_LAYOUT = re.compile(
    r"^(?P<pre>\s*)Intent:(?P<sp1>[ \t]*)(?P<intent>[^\n]*?)(?P<mid>\s*)Slots:(?P<sp2>[ \t]*)(?P<slots>.*?)(?P<post>\s*)$",
    re.DOTALL,
)


@dataclass
class SlotSpan:
    type: str
    value: str


@dataclass
class LabelLayout:
    """A label split into its verbatim layout and its slot values.

    ``format()`` puts it back together; replace ``slots[i].value`` to change only values.
    ``slots is None`` means the label said ``Slots: None`` (or nothing) and is kept verbatim.
    """

    pre: str
    intent: str
    mid: str
    slots_raw: str
    post: str
    sp1: str = " "
    sp2: str = " "
    slots: list[SlotSpan] | None = field(default=None)

    def format(self) -> str:
        if self.slots is None:
            body = self.slots_raw
        else:
            body = ", ".join(f"{s.type}({s.value})" for s in self.slots)
        return f"{self.pre}Intent:{self.sp1}{self.intent}{self.mid}Slots:{self.sp2}{body}{self.post}"


def parse_label_layout(text: str) -> LabelLayout | None:
    """Split an ``Intent: … Slots: …`` label into layout and slots; None if it doesn't fit."""
    m = _LAYOUT.match(text)
    if not m:
        return None
    raw = m.group("slots")
    layout = LabelLayout(
        pre=m.group("pre"),
        intent=m.group("intent"),
        mid=m.group("mid"),
        slots_raw=raw,
        post=m.group("post"),
        sp1=m.group("sp1"),
        sp2=m.group("sp2"),
    )
    if raw.strip() and raw.strip().lower() != "none":
        spans = []
        for item in split_outside_parens(raw):
            sm = _SLOT_ITEM.match(item.strip())
            if not sm:
                return None  # unparseable slot list: caller decides (keep / flag)
            spans.append(SlotSpan(sm.group(1).strip(), sm.group(2)))
        layout.slots = spans
    return layout


# ---------------------------------------------------------------------------------------------
# Normalization maps

BUILTIN_MAPS: dict[str, dict[str, list[str]]] = {
    "sv-sentiment": {
        "positiv": ["positiv", "positivt", "positiva"],
        "negativ": ["negativ", "negativt", "negativa"],
        "neutral": ["neutral", "neutralt", "neutrala"],
    },
    "en-sentiment": {
        "positive": ["positive", "pos"],
        "negative": ["negative", "neg"],
        "neutral": ["neutral", "neu"],
    },
}

_TRAILING_PUNCT = string.punctuation + "…“”«»"


def label_key(text: str) -> str:
    """Matching key: case, surrounding whitespace and trailing punctuation ignored."""
    return text.strip().lower().rstrip(_TRAILING_PUNCT).strip()


@dataclass
class LabelMap:
    """Folds variants to canonical labels. ``name`` is the built-in name or file path."""

    name: str
    canonical: dict[str, list[str]]
    _lookup: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._lookup = {}
        for canon, variants in self.canonical.items():
            for v in [canon, *variants]:
                other = self._lookup.setdefault(label_key(v), canon)
                if other != canon:  # the variant would silently fold to whichever came last
                    raise UserError(f"label map '{self.name}': variant '{v}' is listed under both '{other}' and '{canon}'")

    def lookup(self, text: str) -> str | None:
        """The canonical form of ``text``, or None when the map doesn't know it."""
        return self._lookup.get(label_key(text))

    def normalize(self, text: str) -> str:
        """Canonical form if known, else ``text`` unchanged."""
        found = self.lookup(text)
        return text if found is None else found


def _search_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent
    return [Path.cwd() / "templates" / "labels", here.parent / "templates" / "labels"]


def _parse_map_file(path: Path) -> dict[str, list[str]]:
    text = read_text(path, "label map")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = loads_strict(text)
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: cannot parse label map ({first})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: label map must be an object {{canonical: [variants…]}}")
    out: dict[str, list[str]] = {}
    for canon, variants in data.items():
        if canon.startswith("_"):  # "_comment" headers
            continue
        if isinstance(variants, str):
            variants = [variants]
        if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
            raise UserError(f"{path}: label map entry '{canon}' must be a list of strings")
        out[str(canon)] = variants
    return out


def load_label_map(name_or_path: str, flag: str = "--map") -> LabelMap:
    """A built-in map by name, a map in ``templates/labels/NAME.{json,yaml}``, or a file path;
    ``flag`` names the option in the error for an unknown name."""
    if name_or_path in BUILTIN_MAPS:
        return LabelMap(name_or_path, BUILTIN_MAPS[name_or_path])
    p = Path(name_or_path)
    if p.is_file():
        return LabelMap(str(p), _parse_map_file(p))
    for d in _search_dirs():
        for ext in (".json", ".yaml", ".yml"):
            cand = d / f"{name_or_path}{ext}"
            if cand.is_file():
                return LabelMap(name_or_path, _parse_map_file(cand))
    files = {f.stem for d in _search_dirs() if d.is_dir() for f in d.iterdir() if f.suffix in (".json", ".yaml", ".yml")}
    known = ", ".join(sorted(set(BUILTIN_MAPS) | files))
    raise UserError(
        f"{flag}: unknown label map '{name_or_path}' (known: {known}; or a JSON/YAML file path)"
    )
