"""Where the ``music2emo`` model's weights come from: explicit local paths, or the Hugging Face hub cache.

Three pieces, each from an explicit argument, else an environment variable, else ``huggingface_hub``:

=============  ==========================  ======================  =============================================
piece          argument / CLI option       environment variable    hub location
=============  ==========================  ======================  =============================================
MERT           ``mert=`` / ``--mert``      ``M2E_MERT``            model ``m-a-p/MERT-v1-95M`` (config + weights)
head           ``checkpoint=``             ``M2E_CHECKPOINT``      model ``amaai-lab/music2emo``,
               / ``--checkpoint``                                  ``saved_models/J_all.ckpt``
BTC chords     ``chord_model=``            ``M2E_CHORD_MODEL``     Space ``amaai-lab/music2emo``,
               / ``--chord-model``                                 ``inference/data/btc_model_large_voca.pt``
=============  ==========================  ======================  =============================================

Downloads go to the standard hub cache (``HF_HOME`` / ``HF_HUB_CACHE``); ``HF_HUB_OFFLINE=1`` (read at call
time) means cache only. When MERT or the head cannot be had, :class:`WeightsUnavailableError` lists everything
missing at once and how to provide it. BTC is optional with ``chords="auto"``: without it the backend uses the
offline chord recogniser and says so (a warning on stderr and in every result); ``chords="btc"`` makes it required.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

MERT_REPO = "m-a-p/MERT-v1-95M"
HEAD_REPO = "amaai-lab/music2emo"
HEAD_FILE = "saved_models/J_all.ckpt"
BTC_REPO = "amaai-lab/music2emo"
BTC_REPO_TYPE = "space"
BTC_FILE = "inference/data/btc_model_large_voca.pt"

# "owner/name" as the hub spells repository ids.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

ENV_MERT = "M2E_MERT"
ENV_CHECKPOINT = "M2E_CHECKPOINT"
ENV_CHORD_MODEL = "M2E_CHORD_MODEL"


def _how_to_provide(what: str) -> str:
    """How to provide one missing piece (the key of ``WeightsUnavailableError.missing``): its local path option,
    argument and environment variable, and where the hub cache keeps it."""
    if what.startswith("MERT"):
        return (f"--mert DIR / mert=DIR / ${ENV_MERT} (DIR = config.json + model.safetensors or "
                f"pytorch_model.bin), or the hub cache of {MERT_REPO}")
    if what.startswith("head"):
        return (f"--checkpoint FILE / checkpoint=FILE / ${ENV_CHECKPOINT} (J_all.ckpt or a .safetensors head), "
                f"or the hub cache of {HEAD_REPO} {HEAD_FILE}")
    if what.startswith("BTC"):
        return (f"--chord-model FILE / chord_model=FILE / ${ENV_CHORD_MODEL}, or the hub cache of the Space "
                f"{BTC_REPO} {BTC_FILE}; or choose --chords offline / chords='offline'")
    return ""


class WeightsUnavailableError(RuntimeError):
    """The ``music2emo`` weights could not be found locally or fetched; the message says how to provide them.

    Every missing piece is listed at once, each with how to provide it, so a user fixes them all in one go.
    """

    def __init__(self, missing: dict[str, str], offline: bool):
        self.missing = dict(missing)
        self.offline = offline
        lines = ["model 'music2emo' cannot be loaded: " + ", ".join(missing) + " unavailable"
                 + (" (offline: HF_HUB_OFFLINE is set or local_files_only=True)" if offline else "") + "."]
        for what, why in missing.items():
            lines.append(f"  - {what}: {why}")
            how = _how_to_provide(what)
            if how:
                lines.append(f"      provide: {how}")
        lines += [
            ("The hub cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub) fills on a run with "
             "network access" + (" (unset HF_HUB_OFFLINE)" if offline else "") + "; HF_HUB_OFFLINE=1 then reads it "
             "only. Local paths can be given in the API too: Music2emo(model='music2emo', mert=DIR, "
             "checkpoint='J_all.ckpt', chord_model='btc_model_large_voca.pt')."),
            "The embedded model works offline with nothing to download: Music2emo(model='lite') / m2e predict "
            "--model lite.",
        ]
        super().__init__("\n".join(lines))


@dataclass
class Music2EmoWeights:
    """Resolved locations: a MERT directory, the head checkpoint, and the BTC weights (``None`` if unavailable)."""

    mert: Path
    checkpoint: Path | None  # None only when the head was not asked for (``use_head=False``: training features)
    chord_model: Path | None
    sources: dict[str, str] = field(default_factory=dict)  # piece -> "argument" | "env M2E_..." | "hub ..."
    notes: dict[str, str] = field(default_factory=dict)  # why an optional piece is missing


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a truthy value right now."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@lru_cache(maxsize=4)
def _endpoint_answers(endpoint: str, timeout: float) -> bool:
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except OSError:  # no DNS, no route, refused, timed out
        return False
    return True


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint opens within ``timeout`` s (asked once per process).

    huggingface_hub retries a failed request five times with back-off (about 23 s of warnings) before it gives up;
    an offline machine should hear "unreachable" at once. Behind a proxy a direct probe proves nothing: assumed
    reachable, and huggingface_hub decides.
    """
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return True
    from huggingface_hub import constants

    return _endpoint_answers(constants.ENDPOINT, float(timeout))


def _download(repo_id: str, filename: str, *, repo_type: str | None = None, local_files_only: bool,
              cache_dir=None) -> Path:
    from huggingface_hub import hf_hub_download

    if not local_files_only and not hub_reachable():
        local_files_only = True  # the cache still serves; a miss then reads as "hub could not be reached"
    # huggingface_hub reads HF_HUB_CACHE once at import; honour a value set later (tests, notebooks) too.
    cache_dir = cache_dir if cache_dir is not None else os.environ.get("HF_HUB_CACHE") or None
    return Path(hf_hub_download(repo_id, filename, repo_type=repo_type, local_files_only=local_files_only,
                                cache_dir=cache_dir))


_UNREACHABLE = "not in the local Hugging Face cache and the hub could not be reached"


def _why(exc: Exception, offline: bool) -> str:
    name = type(exc).__name__
    if name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled") or offline:
        return "not in the local Hugging Face cache" if offline else _UNREACHABLE
    text = str(exc).strip().splitlines()
    return f"{name}: {text[0] if text else ''}".strip()


def fetch_mert(repo_id: str = MERT_REPO, *, local_files_only: bool | None = None, cache_dir=None) -> Path:
    """Directory (a hub snapshot) holding MERT's ``config.json`` and weights; downloads into the HF cache.

    Raises :class:`WeightsUnavailableError` when the files are neither cached nor downloadable.
    """
    offline = hub_offline() if local_files_only is None else bool(local_files_only)
    try:
        config = _download(repo_id, "config.json", local_files_only=offline, cache_dir=cache_dir)
    except Exception as exc:
        raise WeightsUnavailableError({f"MERT ({repo_id})": _why(exc, offline)}, offline) from exc
    errors = []
    # safetensors first (no pickle at all); the MERT repos publish pytorch_model.bin.
    for name in ("model.safetensors", "pytorch_model.bin"):
        try:
            weights = _download(repo_id, name, local_files_only=offline, cache_dir=cache_dir)
        except Exception as exc:
            errors.append(exc)
            continue
        if weights.parent != config.parent:  # same snapshot folder normally; keep them together otherwise
            raise WeightsUnavailableError({f"MERT ({repo_id})": f"{config} and {weights} are in different "
                                           "folders; pass a local directory with mert=..."}, offline)
        return config.parent
    raise WeightsUnavailableError({f"MERT ({repo_id})": "weights " + _why(errors[-1], offline)}, offline)


def _explicit(value, env) -> tuple:
    """``(value, how it was given)`` from an argument, else the environment variable ``env``; else (None, None)."""
    if value is not None:
        return value, "argument"
    if os.environ.get(env):
        return os.environ[env], f"env {env}"
    return None, None


def _find_file(value_how, repo, filename, repo_type, *, cache_only: bool, offline: bool,
               cache_dir) -> tuple[Path | None, str]:
    """``(path, where it came from)`` for an explicit file or a hub file; ``(None, why not)`` when unavailable."""
    value, how = value_how
    if value is not None:
        if not os.fspath(value).strip():  # Path("") is ".": say what was given, not "'.' not found"
            return None, f"an empty path (given by {how})"
        p = Path(os.fspath(value)).expanduser()
        if p.is_dir():  # "not found" was wrong: it exists, as a folder
            return None, f"{p} is a folder, not a file (given by {how})"
        return (p, how) if p.is_file() else (None, f"{p} not found (given by {how})")
    try:
        p = _download(repo, filename, repo_type=repo_type, local_files_only=cache_only, cache_dir=cache_dir)
        return p, f"hub {repo_type + ':' if repo_type else ''}{repo}/{filename}"
    except Exception as exc:
        return None, f"{repo}/{filename}: {_why(exc, offline) if not cache_only or offline else _UNREACHABLE}"


def find_chord_model(chord_model: str | os.PathLike | None = None, *, local_files_only: bool | None = None,
                     cache_dir=None) -> tuple[Path | None, str]:
    """The BTC weights alone (training features need no head): ``(path, source)`` or ``(None, why not)``.

    An explicit ``chord_model`` or ``$M2E_CHORD_MODEL`` that does not exist is ``(None, why)`` as well; callers
    decide whether that is an error (``--chords btc``) or a fallback (``--chords auto``).
    """
    offline = hub_offline() if local_files_only is None else bool(local_files_only)
    return _find_file(_explicit(chord_model, ENV_CHORD_MODEL), BTC_REPO, BTC_FILE, BTC_REPO_TYPE,
                      cache_only=offline, offline=offline, cache_dir=cache_dir)


def resolve_music2emo_weights(mert: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
                              chord_model: str | os.PathLike | None = None, *,
                              local_files_only: bool | None = None, cache_dir=None,
                              use_btc: bool = True, require_btc: bool = False,
                              use_head: bool = True) -> Music2EmoWeights:
    """Find (or fetch) the three pieces of the ``music2emo`` model.

    Parameters
    ----------
    mert : str or path, optional
        Local MERT directory or hub id; default ``$M2E_MERT``, else ``m-a-p/MERT-v1-95M``.
    checkpoint : str or path, optional
        Head checkpoint (``J_all.ckpt`` or our ``.safetensors``); default ``$M2E_CHECKPOINT``, else the hub.
    chord_model : str or path, optional
        BTC ``btc_model_large_voca.pt``; default ``$M2E_CHORD_MODEL``, else the hub Space.
    local_files_only : bool, optional
        Never touch the network; default: ``HF_HUB_OFFLINE``.
    cache_dir : path, optional
        Hub cache directory (default: the standard one).
    use_btc : bool
        ``False`` skips looking for BTC (the backend then uses the offline chord recogniser).
    require_btc : bool
        BTC missing is an error (``chords="btc"``), listed with the other missing pieces.
    use_head : bool
        ``False`` skips the head (training features need MERT and chords only); ``checkpoint`` is then ``None``.

    Raises
    ------
    WeightsUnavailableError
        MERT or the head (or BTC, when required or given) is unavailable (the message lists every missing piece
        and how to provide it).
    """
    offline = hub_offline() if local_files_only is None else bool(local_files_only)
    cache_only = offline
    missing: dict[str, str] = {}
    sources: dict[str, str] = {}
    notes: dict[str, str] = {}

    # MERT: a directory, or a hub id.
    mert_value, how = _explicit(mert, ENV_MERT)
    mert_dir = None
    if mert_value is not None and not os.fspath(mert_value).strip():  # Path("") would be the working directory
        missing["MERT"] = f"an empty path (given by {how})"
    elif mert_value is not None and Path(os.fspath(mert_value)).expanduser().is_dir():
        folder = Path(os.fspath(mert_value)).expanduser()
        # Checked here, not only when MERT loads, so that a folder without MERT's files is listed with the other
        # missing pieces instead of being reported only once they are provided.
        lacks = [name for name, ok in (("config.json", (folder / "config.json").is_file()),
                                       ("model.safetensors or pytorch_model.bin",
                                        (folder / "model.safetensors").is_file()
                                        or (folder / "pytorch_model.bin").is_file())) if not ok]
        if lacks:
            missing["MERT"] = f"{folder} has no {' and no '.join(lacks)} (given by {how})"
        else:
            mert_dir, sources["mert"] = folder, how
    else:
        repo = str(mert_value) if mert_value is not None else MERT_REPO
        if mert_value is not None and Path(repo).expanduser().is_file():
            missing["MERT"] = f"{repo} is a file; MERT is a folder (config.json + weights) or a hub id (given by {how})"
        elif mert_value is not None and (not HUB_ID.match(repo) or Path(repo).expanduser().exists()):
            missing["MERT"] = f"{repo} is not a MERT directory or hub id (given by {how})"
        else:
            try:
                mert_dir = fetch_mert(repo, local_files_only=offline, cache_dir=cache_dir)
                sources["mert"] = f"hub {repo}"
            except WeightsUnavailableError as exc:
                if mert_value is not None:  # "models/mert" reads as a hub id too: a mistyped local folder
                    exc.missing = {what: f"{why}; no local folder {repo} either (given by {how})"
                                   for what, why in exc.missing.items()}
                missing.update(exc.missing)
                if any("could not be reached" in why for why in exc.missing.values()):
                    cache_only = True  # hub unreachable: the other pieces come from the cache or not at all,
                    # instead of paying huggingface_hub's retries once more per file

    head = None
    if use_head:
        head, how = _find_file(_explicit(checkpoint, ENV_CHECKPOINT), HEAD_REPO, HEAD_FILE, None,
                               cache_only=cache_only, offline=offline, cache_dir=cache_dir)
        if head is None:
            missing["head checkpoint (J_all.ckpt)"] = how
        else:
            sources["checkpoint"] = how
    btc = None
    if use_btc:
        btc, how = _find_file(_explicit(chord_model, ENV_CHORD_MODEL), BTC_REPO, BTC_FILE, BTC_REPO_TYPE,
                              cache_only=cache_only, offline=offline, cache_dir=cache_dir)
        if btc is None:
            notes["chord_model"] = how
            if require_btc or chord_model is not None or os.environ.get(ENV_CHORD_MODEL):
                missing["BTC chord model"] = how  # asked for: a wrong path or no weights is an error
        else:
            sources["chord_model"] = how
    if missing:
        if "chord_model" in notes and "BTC chord model" not in missing:
            missing["BTC chord model (optional)"] = notes["chord_model"]
        raise WeightsUnavailableError(missing, offline)
    return Music2EmoWeights(mert=mert_dir, checkpoint=head, chord_model=btc, sources=sources, notes=notes)
