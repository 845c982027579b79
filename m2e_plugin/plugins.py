"""Plugin discovery and the extractor registry.

* One :class:`pluggy.PluginManager` per process (:func:`get_plugin_manager`), holding the hookspecs of
  :mod:`m2e_plugin.hookspecs` and the built-in plugins listed in :data:`DEFAULT_PLUGINS`.
* Third-party plugins come from the ``m2e`` entry-point group and are loaded lazily, the first time something
  asks for extractors or for the plugin list -- importing :mod:`m2e_plugin` never imports a plugin.
* ``M2E_LOAD_PLUGINS`` (comma list of entry-point or distribution names) restricts which entry points load;
  set to an empty string it loads none. ``M2E_TRACE_PLUGINS=1`` traces hook calls on stderr.
* A plugin that raises while loading or registering is reported (a :class:`PluginLoadWarning` and an entry in
  :func:`list_plugins`) and skipped: it never takes the host down. A hook implementation whose name matches no
  spec (a misspelt hook) raises :class:`pluggy.PluginValidationError` naming the plugin and the hook.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import pluggy

from m2e_plugin import hookspecs

# Built-in plugins: modules registered through the same hooks as third-party ones (llm/datasette habit).
DEFAULT_PLUGINS: tuple[str, ...] = ("m2e_plugin.extractor",)

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
_REQUIRED_ATTRIBUTES = ("name", "version", "sample_rate", "outputs")


class PluginLoadWarning(RuntimeWarning):
    """A plugin could not be loaded or registered and was skipped."""


@dataclass
class PluginInfo:
    """What :func:`list_plugins` reports for one plugin."""

    name: str
    version: str | None
    distribution: str | None
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    extractors: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "version": self.version, "distribution": self.distribution,
               "builtin": self.builtin, "hooks": self.hooks, "extractors": self.extractors}
        if self.error is not None:
            out["error"] = self.error
        return out


class _State:
    """Everything the module caches; replaced wholesale by :func:`reset`."""

    def __init__(self) -> None:
        self.pm: pluggy.PluginManager | None = None
        self.entry_points_loaded = False
        self.extractors: dict[str, type] | None = None
        self.extractor_owner: dict[str, str] = {}
        self.info: dict[str, PluginInfo] = {}  # plugin name -> info (loaded or failed)


_state = _State()
_lock = threading.RLock()


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager with hookspecs and built-in plugins registered (entry points not loaded)."""
    with _lock:
        if _state.pm is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
            pm.add_hookspecs(hookspecs)
            if os.environ.get("M2E_TRACE_PLUGINS", "").strip() not in ("", "0"):
                pm.trace.root.setwriter(lambda text: sys.stderr.write(text))
                pm.enable_tracing()
            for module_name in DEFAULT_PLUGINS:
                module = importlib.import_module(module_name)
                pm.register(module, name=module_name)
                _state.info[module_name] = PluginInfo(module_name, _own_version(), "m2e", builtin=True)
            _check_hooks(pm)
            _state.pm = pm
        return _state.pm


def load_plugins() -> pluggy.PluginManager:
    """Load the ``m2e`` entry points (once), honouring ``M2E_LOAD_PLUGINS``; return the plugin manager."""
    with _lock:
        pm = get_plugin_manager()
        if _state.entry_points_loaded:
            return pm
        allowed = _allow_list()
        seen: set[tuple[str, str]] = set()
        matched: set[str] = set()
        misspelt: pluggy.PluginValidationError | None = None
        for ep in _entry_points():
            if (ep.name, ep.value) in seen:  # the same distribution twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            dist_name, dist_version = _distribution(ep)
            if allowed is not None:
                keys = {_norm(ep.name)} | ({_norm(dist_name)} if dist_name else set())
                if not keys & allowed:
                    continue
                matched |= keys & allowed
            if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            info = PluginInfo(ep.name, dist_version, dist_name, builtin=False)
            _state.info[ep.name] = info
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the host down
                _fail(info, f"failed to load entry point {ep.value!r}: {type(exc).__name__}: {exc}")
                continue
            try:
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # e.g. PluginValidationError for wrong hook arguments
                _fail(info, f"failed to register: {type(exc).__name__}: {exc}")
                continue
            try:
                _check_hooks(pm, only=plugin)
            except pluggy.PluginValidationError as exc:
                # Loud, not skipped quietly: unregister it, keep loading the others, raise at the end (and again
                # on the next call, since loading is not marked done).
                pm.unregister(plugin)
                info.error = str(exc)
                misspelt = misspelt or exc
        _state.extractors = None
        if misspelt is not None:
            raise misspelt
        _state.entry_points_loaded = True
        if allowed is not None:
            for name in sorted(allowed - matched):
                warnings.warn(f"M2E_LOAD_PLUGINS names {name!r} but no installed m2e plugin has that name",
                              PluginLoadWarning, stacklevel=2)
        return pm


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register an in-memory plugin object or module (tests, embedding hosts); return its registered name."""
    with _lock:
        pm = get_plugin_manager()
        registered = pm.register(plugin, name=name)
        if registered is None:
            raise ValueError(f"plugin {name or plugin!r} is blocked or already registered")
        try:
            _check_hooks(pm, only=plugin)
        except pluggy.PluginValidationError:
            pm.unregister(plugin)
            raise
        _state.info[registered] = PluginInfo(registered, None, None, builtin=False)
        _state.extractors = None
        return registered


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin` (or any plugin, by name)."""
    with _lock:
        pm = get_plugin_manager()
        pm.unregister(name=name)
        _state.info.pop(name, None)
        _state.extractors = None


def reset() -> None:
    """Forget the plugin manager and everything loaded (the next call starts afresh). For tests."""
    global _state
    with _lock:
        _state = _State()


def get_extractors() -> dict[str, type]:
    """Every registered extractor class by name (built-ins and plugins), loading plugins on first use."""
    with _lock:
        pm = load_plugins()
        if _state.extractors is None:
            _collect_extractors(pm)
        return dict(_state.extractors)


def get_extractor_class(name: str) -> type:
    """The extractor class registered under ``name``; ``ValueError`` naming the available ones otherwise."""
    extractors = get_extractors()
    try:
        return extractors[name]
    except KeyError:
        failed = [i.name for i in _state.info.values() if i.error]
        hint = f" (plugins that failed to load: {', '.join(failed)}; see `m2e plugins`)" if failed else ""
        raise ValueError(f"unknown extractor {name!r}; available: {', '.join(sorted(extractors))}{hint}") from None


def get_extractor(name: str, **options):
    """Instantiate the extractor ``name`` with ``options`` (e.g. ``device="cpu"``)."""
    return get_extractor_class(name)(**options)


def list_plugins() -> list[dict[str, Any]]:
    """Plugins with version, distribution, implemented hooks and registered extractors; failed ones carry ``error``."""
    with _lock:
        pm = load_plugins()
        if _state.extractors is None:
            _collect_extractors(pm)
        for name, plugin in pm.list_name_plugin():
            info = _state.info.setdefault(name, PluginInfo(name, None, None, builtin=False))
            info.hooks = sorted(caller.name for caller in (pm.get_hookcallers(plugin) or []))
        for info in _state.info.values():
            info.extractors = sorted(n for n, owner in _state.extractor_owner.items() if owner == info.name)
        order = sorted(_state.info.values(), key=lambda i: (not i.builtin, i.name))
        return [i.as_dict() for i in order]


def validate_extractor_class(cls: object) -> None:
    """Raise ``TypeError`` if ``cls`` does not follow the extractor protocol (see the hookspec)."""
    if not isinstance(cls, type):
        raise TypeError(f"register() expects an extractor class, got {cls!r}")
    # Looked up statically: a class may resolve e.g. sample_rate lazily from its model, which listing must not load.
    missing = [a for a in _REQUIRED_ATTRIBUTES if not any(a in vars(k) for k in cls.__mro__)]
    if not callable(getattr(cls, "compute", None)):
        missing.append("compute()")
    if missing:
        raise TypeError(f"extractor class {cls.__qualname__} lacks {', '.join(missing)}")
    if not isinstance(cls.name, str) or not cls.name.strip():
        raise TypeError(f"extractor class {cls.__qualname__}: name must be a non-empty string, got {cls.name!r}")
    if not isinstance(cls.version, str):
        raise TypeError(f"extractor {cls.name!r}: version must be a string, got {cls.version!r}")
    outputs = cls.outputs
    if isinstance(outputs, str) or not all(isinstance(o, str) for o in outputs):
        raise TypeError(f"extractor {cls.name!r}: outputs must be a tuple of descriptor names")


def check_extractor(extractor: object) -> None:
    """Raise ``TypeError`` if an extractor *instance* breaks the protocol (checked once the model is loaded)."""
    validate_extractor_class(type(extractor))
    try:
        rate = int(extractor.sample_rate)
    except (TypeError, ValueError):
        rate = 0
    if rate <= 0:
        raise TypeError(f"extractor {extractor.name!r}: sample_rate must be a positive int, "
                        f"got {extractor.sample_rate!r}")


# --------------------------------------------------------------------------------------------------- internals

def _collect_extractors(pm: pluggy.PluginManager) -> None:
    """Call every ``m2e_register_extractors`` implementation separately, so one failing plugin skips only itself."""
    extractors: dict[str, type] = {}
    owner: dict[str, str] = {}
    impls = pm.hook.m2e_register_extractors.get_hookimpls()
    # get_hookimpls() lists in registration order: built-ins claim their names before third parties.
    for impl in impls:
        if impl.hookwrapper or impl.wrapper:
            continue
        # A caller limited to this one plugin: still goes through pluggy (tracing, monitoring), but an exception
        # stops only this plugin.
        only_this = pm.subset_hook_caller("m2e_register_extractors",
                                          [i.plugin for i in impls if i.plugin is not impl.plugin])
        plugin_name = impl.plugin_name
        collected: list[type] = []

        def register(cls, _collected=collected):
            validate_extractor_class(cls)
            _collected.append(cls)

        info = _state.info.setdefault(plugin_name, PluginInfo(plugin_name, None, None, builtin=False))
        try:
            only_this(register=register)
        except Exception as exc:
            _fail(info, f"m2e_register_extractors raised {type(exc).__name__}: {exc}")
            continue
        for cls in collected:
            if cls.name in extractors:
                _fail(info, f"extractor name {cls.name!r} is already registered by {owner[cls.name]!r}; "
                            f"{cls.__module__}.{cls.__qualname__} was skipped", keep=True)
                continue
            extractors[cls.name] = cls
            owner[cls.name] = plugin_name
    _state.extractors = extractors
    _state.extractor_owner = owner


def _check_hooks(pm: pluggy.PluginManager, only: object | None = None) -> None:
    """``check_pending`` with a message that names the plugin, the hook and the closest real hook name."""
    known = [name for name in vars(hookspecs) if name.startswith(f"{hookspecs.PROJECT_NAME}_")]
    for name, caller in vars(pm.hook).items():
        if name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook or (only is not None and impl.plugin is not only):
                continue
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known hooks: {', '.join(known)}"
            raise pluggy.PluginValidationError(
                impl.plugin, f"plugin {impl.plugin_name!r} implements unknown hook {name!r}{hint}")
    if only is None:
        pm.check_pending()


def _fail(info: PluginInfo, message: str, keep: bool = False) -> None:
    info.error = message if info.error is None else f"{info.error}; {message}"
    what = "" if keep else " and was skipped"
    warnings.warn(f"m2e plugin {info.name!r}: {message}{what}", PluginLoadWarning, stacklevel=3)


def _entry_points():
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def _distribution(ep) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    try:
        return dist.metadata["Name"], dist.version
    except Exception:  # broken metadata must not stop discovery
        return None, None


def _allow_list() -> set[str] | None:
    raw = os.environ.get("M2E_LOAD_PLUGINS")
    if raw is None:
        return None
    return {_norm(part) for part in raw.split(",") if part.strip()}


def _norm(name: str) -> str:
    # Distribution names compare case-insensitively with -, _ and . equivalent (PEP 503).
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _own_version() -> str:
    from m2e_plugin import __version__

    return __version__
