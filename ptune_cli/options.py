"""Config dataclasses are the one declaration of a command's options.

Each field of a command's config is declared once with :func:`option` — default, help text,
flag name, and whether it changes the command's output (``affects_output``, what a resumed run
must match). Choices are ``Literal[...]`` types, so ``--help`` lists them and :func:`validate`
checks them. :func:`typer_command` builds the typer command from the dataclass, so the CLI
never re-declares an option, and the plain core function (``run_train(cfg)``, ...) calls
:func:`validate` once, listing every problem in one :class:`UserError`.

Kept free of heavy imports: ``ptune --help`` imports every config.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args, get_origin

from ptune_cli.errors import UserError

_META = "ptune_option"

# --precision of every command (train, eval, translate): one word list, one rule for auto
# (models.torch_dtype); declare it as option("auto", aliases=PRECISION_ALIASES, help=PRECISION_HELP).
Precision = Literal["auto", "fp32", "fp16", "bf16"]
PRECISION_ALIASES = {"no": "fp32"}  # train's old word for fp32 (old scripts)
PRECISION_HELP = "auto (fp32 on CPU; bf16 on GPUs that have it, else fp16), fp32, fp16, bf16."


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",
    flag: str | None = None,
    short: str | None = None,
    affects_output: bool = True,
    argument: bool = False,
    panel: str | None = None,
    cli: bool = True,
    show_default: bool = True,
    metavar: str | None = None,
    aliases: dict[str, str] | None = None,
    sep: str | None = None,
) -> Any:
    """A config field with its CLI declaration.

    ``flag``: the long flag (default ``--field-name``); ``short``: e.g. ``-o``;
    ``affects_output``: False for options a resumed run may change (progress, checkpoint
    interval, output paths); ``argument``: a positional argument; ``panel``: the ``--help``
    panel; ``cli=False``: not on the command line (set by code); ``aliases``: old words still
    accepted for a ``Literal`` field (``{"no": "fp32"}``), mapped before validation;
    ``sep``: a list/tuple field given on the command line as one ``sep``-separated value
    (``--labels a,b,c``), split and stripped into the field's type.
    """
    meta = dict(help=help, flag=flag, short=short, affects_output=affects_output, argument=argument,
                panel=panel, cli=cli, show_default=show_default, metavar=metavar, aliases=aliases or {},
                sep=sep)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={_META: meta})
    return dataclasses.field(default=default, metadata={_META: meta})


def _meta(f: dataclasses.Field) -> dict:
    return f.metadata.get(_META, {})


def flag_of(cls_or_cfg, name: str) -> str:
    """The CLI flag of field ``name`` (for messages): ``--max-steps``, ``-o``, ``INPUT``."""
    f = next(f for f in dataclasses.fields(cls_or_cfg) if f.name == name)
    m = _meta(f)
    if m.get("argument"):
        return name.upper()
    return m.get("flag") or "--" + name.replace("_", "-")


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _literal_choices(tp) -> tuple | None:
    """The values of ``Literal[...]`` (or ``Literal[...] | None``), else None."""
    if get_origin(tp) is Literal:
        return get_args(tp)
    for arg in get_args(tp):
        if get_origin(arg) is Literal:
            return get_args(arg)
    return None


def choices(cls, name: str) -> tuple:
    """The allowed values of a ``Literal`` field."""
    return _literal_choices(_hints(cls)[name]) or ()


def output_fields(cls_or_cfg) -> list[str]:
    """Fields whose value changes the output (``affects_output``): what a resumed run — train,
    translate, eval — must match."""
    return [f.name for f in dataclasses.fields(cls_or_cfg) if _meta(f).get("affects_output", True)]


def output_settings(cfg) -> dict[str, Any]:
    """``{field: value}`` of the :func:`output_fields` (the resume fingerprint's options part)."""
    return {name: getattr(cfg, name) for name in output_fields(cfg)}


def apply_aliases(cls_or_cfg, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (e.g. options saved by an earlier run) with old words mapped to the current
    ones, as :func:`validate` maps them (``{"precision": "no"}`` → ``{"precision": "fp32"}``)."""
    out = dict(values)
    for f in dataclasses.fields(cls_or_cfg):
        aliases = _meta(f).get("aliases") or {}
        if isinstance(out.get(f.name), str) and out[f.name] in aliases:
            out[f.name] = aliases[out[f.name]]
    return out


def validate(cfg, problems: list[str] | None = None) -> None:
    """Apply ``aliases``, check every ``Literal`` field, add ``problems`` (and those of the
    config's own ``problems()`` method, when it has one) and raise one :class:`UserError`
    listing them all."""
    found: list[str] = []
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        aliases = _meta(f).get("aliases") or {}
        if isinstance(value, str) and value in aliases:
            value = aliases[value]
            setattr(cfg, f.name, value)
        allowed = _literal_choices(hints[f.name])
        if allowed and value is not None and value not in allowed:
            found.append(f"{flag_of(cfg, f.name)} must be one of {', '.join(map(str, allowed))}, got '{value}'")
    own = getattr(cfg, "problems", None)
    if callable(own):
        found += own()
    found += problems or []
    if found:
        raise UserError("invalid options: " + "; ".join(found))


def _typer_param(cls, f: dataclasses.Field, tp) -> inspect.Parameter:
    import typer

    m = _meta(f)
    allowed = _literal_choices(tp)
    kw: dict[str, Any] = {"help": m.get("help") or None, "show_default": m.get("show_default", True)}
    if m.get("panel"):
        kw["rich_help_panel"] = m["panel"]
    if m.get("metavar"):
        kw["metavar"] = m["metavar"]
    base = tp
    if allowed:
        # plain str on the command line, the choices in --help: validate() checks them with
        # every other problem (one line, exit 1) instead of click stopping at the first
        kw.setdefault("metavar", "[" + "|".join(map(str, allowed)) + "]")
        base = str | None if type(None) in get_args(tp) else str
    if m.get("sep"):
        base = str | None
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    if required:
        default = inspect.Parameter.empty
    elif f.default is not dataclasses.MISSING:
        default = f.default
    else:
        default = f.default_factory()
    if m.get("sep") and not required:
        default = None  # not given: the field's own default (see _split)
    if m.get("argument"):
        info = typer.Argument(**kw)
    else:
        names = [m.get("flag") or "--" + f.name.replace("_", "-")]
        if m.get("short"):
            names.insert(0, m["short"])
        info = typer.Option(*names, **kw)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[base, info])


def _split(cls, hints: dict, kwargs: dict) -> dict:
    """Split the ``sep`` fields' command-line strings into the field's list or tuple."""
    for f in dataclasses.fields(cls):
        sep = _meta(f).get("sep")
        if not sep or f.name not in kwargs:
            continue
        value = kwargs[f.name]
        if value is None:
            del kwargs[f.name]  # the dataclass default
            continue
        tp = hints[f.name]
        kind = tuple if tuple in (get_origin(tp), *map(get_origin, get_args(tp))) else list
        kwargs[f.name] = kind(x.strip() for x in value.split(sep))
    return kwargs


def typer_command(app, name: str, cls, run: Callable[[Any], Any], *, help: str, epilog: str | None = None,
                  extra: list[inspect.Parameter] | None = None):
    """Register ``ptune NAME`` on ``app``: every CLI field of ``cls`` becomes an option (or
    argument); the command builds ``cls(**options)`` and calls ``run(cfg, **extra_values)``.

    ``extra``: CLI-only parameters that are not part of the config (e.g. ``--markdown``). A
    config class may leave inherited fields off its command line with a ``CLI_OMIT`` class
    attribute (serve's decoding batch is its --max-batch-size).
    """
    hints = _hints(cls)
    omit = getattr(cls, "CLI_OMIT", frozenset())
    params = [_typer_param(cls, f, hints[f.name]) for f in dataclasses.fields(cls)
              if _meta(f).get("cli", True) and f.name not in omit]
    extra = extra or []
    names = {p.name for p in extra}

    def command(**kwargs):
        own = _split(cls, hints, {k: v for k, v in kwargs.items() if k not in names})
        return run(cls(**own), **{k: kwargs[k] for k in names})

    # required first: Python signatures do not allow a required parameter after a default one
    ordered = sorted(params + extra, key=lambda p: p.default is not inspect.Parameter.empty)
    command.__signature__ = inspect.Signature(ordered)
    command.__annotations__ = {p.name: p.annotation for p in ordered}
    command.__doc__ = inspect.cleandoc(help)
    command.__name__ = f"{name.replace('-', '_')}_cmd"
    return app.command(name, epilog=epilog)(command)
