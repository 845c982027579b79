"""Plugin discovery and the model and extractor registries.

* One :class:`pluggy.PluginManager` per process (:func:`get_plugin_manager`), holding the hookspecs of
  :mod:`m2e_plugin.hookspecs` and the built-in plugins listed in :data:`DEFAULT_PLUGINS`.
* Third-party plugins come from the ``m2e`` entry-point group and are loaded lazily, the first time something
  asks for extractors or for the plugin list -- importing :mod:`m2e_plugin` never imports a plugin.
* ``M2E_LOAD_PLUGINS`` (comma list of entry-point or distribution names) restricts which entry points load;
  set to an empty string it loads none. ``M2E_TRACE_PLUGINS=1`` traces hook calls on stderr.
* Models come from ``m2e_register_models`` (:func:`get_models`, :func:`get_model`); every model also serves as
  an extractor of the same name (:func:`m2e_plugin.extractor.model_extractor`), next to the extractors from
  ``m2e_register_extractors`` (:func:`get_extractors`).
* A plugin that fails in any way -- raises on import or while registering, registers junk, implements a
  misspelt hook -- is reported (a :class:`PluginLoadWarning` and an ``error`` in :func:`list_plugins`) and
  skipped: it never takes the host down. Only the model or extractor the user asked for is fatal (a ``ValueError``
  naming the plugins that failed). :func:`register_plugin` (an explicit call) raises for a misspelt hook.
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
from m2e_plugin.registry import ModelEntry, accept_extractor, accept_model, check_extractor, validate_extractor_class

__all__ = ["DEFAULT_PLUGINS", "ModelEntry", "PluginLoadWarning", "check_extractor", "get_extractor",
           "get_extractor_class", "get_extractors", "get_model", "get_models", "get_plugin_manager", "list_plugins",
           "load_plugins", "register_plugin", "reset", "unregister_plugin", "validate_extractor_class"]

# Built-in plugins: modules registered through the same hooks as third-party ones (llm/datasette habit).
DEFAULT_PLUGINS: tuple[str, ...] = ("m2e_plugin.backends.builtin",)

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME


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
    models: list[str] = field(default_factory=list)
    extractors: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "version": self.version, "distribution": self.distribution,
               "builtin": self.builtin, "hooks": self.hooks, "models": self.models, "extractors": self.extractors}
        if self.error is not None:
            out["error"] = self.error
        return out


class _State:
    """Everything the module caches; replaced wholesale by :func:`reset`."""

    def __init__(self) -> None:
        self.pm: pluggy.PluginManager | None = None
        self.entry_points_loaded = False
        self.models: dict[str, ModelEntry] | None = None
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
            if pm.is_blocked(ep.name):
                continue
            if pm.has_plugin(ep.name):  # another distribution took the name: say so, or one plugin just vanishes
                owner = _state.info.get(ep.name)
                taken_by = f"distribution {owner.distribution!r}" if owner and owner.distribution else "another plugin"
                info = PluginInfo(f"{ep.name} ({dist_name or ep.value})", dist_version, dist_name, builtin=False)
                _state.info[info.name] = info
                _fail(info, f"the plugin name {ep.name!r} is already taken by {taken_by}; one of the two must "
                            f"rename its entry point")
                continue
            info = PluginInfo(ep.name, dist_version, dist_name, builtin=False)
            _state.info[ep.name] = info
            conflict = _host_conflict(ep)
            if conflict:  # checked before importing it: a plugin built for another m2e may not even import
                _fail(info, conflict)
                continue
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
                # A misspelt hook would silently do nothing: the plugin is listed with the hook's name and skipped.
                pm.unregister(plugin)
                _fail(info, str(exc))
        _forget_registries()
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
        _forget_registries()
        return registered


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin` (or any plugin, by name)."""
    with _lock:
        pm = get_plugin_manager()
        pm.unregister(name=name)
        _state.info.pop(name, None)
        _forget_registries()


def reset() -> None:
    """Forget the plugin manager and everything loaded (the next call starts afresh). For tests."""
    global _state
    with _lock:
        _state = _State()


def get_models() -> dict[str, ModelEntry]:
    """Every registered model by name (built-ins first, then plugins), loading plugins on first use."""
    return _registry("models", _collect_models)


def get_model(name: str) -> ModelEntry:
    """The model registered under ``name``; ``ValueError`` naming the available ones (and failed plugins) otherwise."""
    return _lookup("model", get_models(), name)


def get_extractors() -> dict[str, type]:
    """Every extractor class by name: one per registered model (same name), then the registered extractors."""
    return _registry("extractors", _collect_extractors)


def get_extractor_class(name: str) -> type:
    """The extractor class registered under ``name``; ``ValueError`` naming the available ones otherwise."""
    return _lookup("extractor", get_extractors(), name)


def get_extractor(name: str, **options):
    """Instantiate the extractor ``name`` with ``options`` (e.g. ``device="cpu"``)."""
    return get_extractor_class(name)(**options)


def list_plugins() -> list[dict[str, Any]]:
    """Plugins with version, distribution, hooks, registered models and extractors; failed ones carry ``error``."""
    with _lock:
        pm = load_plugins()
        if _state.extractors is None:
            _collect_extractors(pm)
        for name, plugin in pm.list_name_plugin():
            info = _state.info.setdefault(name, PluginInfo(name, None, None, builtin=False))
            info.hooks = sorted(caller.name for caller in (pm.get_hookcallers(plugin) or []))
        for info in _state.info.values():
            info.models = sorted(n for n, entry in _state.models.items() if entry.plugin == info.name)
            info.extractors = sorted(n for n, owner in _state.extractor_owner.items() if owner == info.name)
        order = sorted(_state.info.values(), key=lambda i: (not i.builtin, i.name))
        return [i.as_dict() for i in order]


# --------------------------------------------------------------------------------------------------- internals

def _call_each(pm: pluggy.PluginManager, hook: str, accept) -> dict[str, list]:
    """Call every implementation of ``hook`` on its own, so that one failing plugin skips only itself.

    ``accept(item, *args, **kwargs)`` validates what a plugin passes to ``register`` (raising ``TypeError``) and
    returns the value to keep. Returns plugin name -> accepted values, in registration order (built-ins first).
    """
    collected: dict[str, list] = {}
    impls = getattr(pm.hook, hook).get_hookimpls()
    for impl in impls:
        if impl.hookwrapper or impl.wrapper:
            continue
        # A caller limited to this one plugin: still goes through pluggy (tracing, monitoring), but an exception
        # stops only this plugin.
        only_this = pm.subset_hook_caller(hook, [i.plugin for i in impls if i.plugin is not impl.plugin])
        values: list = []
        info = _state.info.setdefault(impl.plugin_name, PluginInfo(impl.plugin_name, None, None, builtin=False))
        try:
            only_this(register=lambda *args, **kwargs: values.append(accept(*args, **kwargs)))
        except Exception as exc:
            _fail(info, f"{hook} raised {type(exc).__name__}: {exc}")
            continue
        collected[impl.plugin_name] = values
    return collected


def _collect_models(pm: pluggy.PluginManager) -> None:
    models: dict[str, ModelEntry] = {}
    for plugin_name, registered in _call_each(pm, "m2e_register_models", accept_model).items():
        for cls, card in registered:
            if cls.name in models:
                owner = models[cls.name].plugin
                _fail(_state.info[plugin_name], f"model name {cls.name!r} is already registered by "
                      f"{owner!r}{_origin(_state.info.get(owner))}; {cls.__module__}.{cls.__qualname__} was skipped",
                      keep=True)
                continue
            models[cls.name] = ModelEntry(cls.name, cls, plugin_name, card)
    _state.models = models


def _collect_extractors(pm: pluggy.PluginManager) -> None:
    from m2e_plugin.extractor import model_extractor

    if _state.models is None:
        _collect_models(pm)
    extractors: dict[str, type] = {}
    owner: dict[str, str] = {}
    for name, entry in _state.models.items():  # every model is an extractor of the same name
        try:
            extractors[name] = model_extractor(entry)  # reads the model's static card
        except Exception as exc:
            _fail(_state.info[entry.plugin], f"model {name!r}: no extractor, its card cannot be read "
                                             f"({type(exc).__name__}: {exc})", keep=True)
            continue
        owner[name] = entry.plugin
    for plugin_name, registered in _call_each(pm, "m2e_register_extractors", accept_extractor).items():
        for cls in registered:
            if cls.name in extractors:
                _fail(_state.info[plugin_name], f"extractor name {cls.name!r} is already registered by "
                      f"{owner[cls.name]!r}{_origin(_state.info.get(owner[cls.name]))}; "
                      f"{cls.__module__}.{cls.__qualname__} was skipped", keep=True)
                continue
            extractors[cls.name] = cls
            owner[cls.name] = plugin_name
    _state.extractors = extractors
    _state.extractor_owner = owner


def _registry(attribute: str, collect) -> dict:
    with _lock:
        pm = load_plugins()
        if getattr(_state, attribute) is None:
            collect(pm)
        return dict(getattr(_state, attribute))


def _lookup(kind: str, registry: dict, name: str):
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; available: {', '.join(sorted(registry))}{_failed_hint()}") from None


def _forget_registries() -> None:
    _state.models = None
    _state.extractors = None


def _failed_hint() -> str:
    # Only plugins that serve nothing: one that skipped a duplicate model name still serves its other models.
    serving = {entry.plugin for entry in (_state.models or {}).values()} | set(_state.extractor_owner.values())
    failed = [i.name for name, i in _state.info.items() if i.error and name not in serving]
    return f" (plugins that failed to load: {', '.join(failed)}; see `m2e plugins`)" if failed else ""


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
    warnings.warn(f"m2e plugin {info.name!r}{_origin(info)}: {message}{what}", PluginLoadWarning, stacklevel=3)


def _origin(info: PluginInfo | None) -> str:
    """`` (from DIST VERSION)`` for an installed plugin: the entry point's name is not what ``pip`` knows it by."""
    if info is None or info.builtin or not info.distribution:
        return ""
    return f" (from {info.distribution}{f' {info.version}' if info.version else ''})"


def _host_conflict(ep) -> str | None:
    """Why the entry point's distribution cannot run on this m2e (its ``Requires-Dist: m2e...`` excludes the
    installed version, e.g. after ``pip install m2e==<older>``, which only warns), or None."""
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # packaging comes with transformers and huggingface_hub; without it nothing is checked
        return None
    try:
        requires = ep.dist.requires or []
    except Exception:  # no distribution (a bare entry point) or broken metadata
        return None
    host = _own_version()
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if _norm(req.name) != hookspecs.PROJECT_NAME or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        if not req.specifier.contains(host, prereleases=True):
            return (f"requires {req.name}{req.specifier} but m2e {host} is installed (upgrade m2e, or install a "
                    f"release of the plugin made for m2e {host})")
    return None


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
