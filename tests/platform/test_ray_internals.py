"""Ray's private internals that hpsearch patches (hpsearch.platform._ray_internals) are still what the
patches expect. When this fails after a Ray upgrade: read the patched code in the new Ray, adapt the
patches, and add the version to VERIFIED_RAY; until then hpsearch runs Tune unpatched on it."""
from __future__ import annotations

import ray
from ray.tune.execution import class_cache, tune_controller

from hpsearch.platform import _ray_internals


def test_the_installed_ray_is_one_the_patches_were_verified_with():
    assert _ray_internals.verified(), (
        f"Ray {ray.__version__} is not in VERIFIED_RAY {_ray_internals.VERIFIED_RAY}: verify "
        f"hpsearch/platform/_ray_internals.py against it (see its docstring) before adding it")


def test_everything_the_patches_rely_on_is_there():
    assert _ray_internals.missing() == [], f"Ray {ray.__version__} changed: {_ray_internals.missing()}"


def test_the_patches_apply_once_on_a_verified_ray():
    _ray_internals.keep_starting_actors()
    _ray_internals.keep_starting_actors()
    patched = tune_controller.TuneController._maybe_reuse_cached_actor
    assert getattr(patched, "_hpsearch", False)
    _ray_internals.register_trainables_without_runtime_env(lambda: False)
    assert getattr(class_cache._ActorClassCache.get, "_hpsearch", False)
    assert "preload_python_modules" in _ray_internals.preload_options(("json",))["_system_config"]


def test_an_unverified_ray_runs_tune_as_it_is(monkeypatch):
    monkeypatch.setattr(_ray_internals, "VERIFIED_RAY", ("0.0.0",))
    assert not _ray_internals.verified()
    assert _ray_internals.preload_options(("json",)) == {}
    original = tune_controller.TuneController._maybe_reuse_cached_actor
    _ray_internals.keep_starting_actors()  # already patched or not, nothing new is applied
    assert tune_controller.TuneController._maybe_reuse_cached_actor is original
