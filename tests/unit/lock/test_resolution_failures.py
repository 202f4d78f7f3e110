"""Each cause of a failed lock gets its own message and hint, read from uv's real words.

The texts below are what uv 0.13.9 printed for ``uv pip compile --only-binary :all:
--python-version 3.11 --python-platform x86_64-manylinux_2_28 --exclude-newer 2026-11-01T00:00:00Z``
(the adapter's own arguments); tests/integration/lock/test_lock.py runs uv itself on the same cases.
"""

from __future__ import annotations

from pathlib import Path

from envbuild.lock import names
from envbuild.lock.names import closest, nearest_names, project_names
from envbuild.lock.resolvers.base import ResolveRequest
from envbuild.lock.resolvers.failures import NoWheel, no_wheels, not_found
from envbuild.lock.resolvers.uv import explain_failure
from support.index import make_wheel, serve_index

SDIST_ONLY = """\
error: No solution found when resolving dependencies
  cause: Because all versions of docopt have no usable wheels and envbuild-variant depends on docopt, we can \
conclude that your requirements are unsatisfiable.

hint: Wheels are required for `docopt` because building from source is disabled for all packages \
(i.e., with `--no-build`)
"""
OTHER_PLATFORMS = """\
error: No solution found when resolving dependencies
  cause: Because pywin32<=302 has no wheels with a matching Python ABI tag (e.g., `cp311`) and only the following \
versions of pywin32 are available:
             pywin32<=302
             pywin32>=303
         we can conclude that pywin32<303 cannot be used.
         And because pywin32>=303 has no wheels with a matching platform tag (e.g., `manylinux_2_28_x86_64`) and \
envbuild-variant depends on pywin32, we can conclude that your requirements are unsatisfiable.

hint: You require CPython 3.11 (`cp311`), but we only found wheels for `pywin32` (v302) with the following Python ABI \
tags: `cp36m`, `cp37m`, `cp38`, `cp39`, `cp310`

hint: Wheels are available for `pywin32` (v312) on the following platforms: `win32`, `win_amd64`, `win_arm64`
"""
MISSPELT = """\
error: No solution found when resolving dependencies
  cause: Because scikitlearn was not found in the package registry and envbuild-variant depends on scikitlearn, we \
can conclude that your requirements are unsatisfiable.
"""
CONFLICT = """\
error: No solution found when resolving dependencies
  cause: Because pandas==2.2.3 depends on numpy{python_full_version < '3.12'}>=1.23.2 and envbuild-variant depends \
on numpy<1.20, we can conclude that your requirements and pandas==2.2.3 are incompatible.
         And because envbuild-variant depends on pandas==2.2.3, we can conclude that your requirements are \
unsatisfiable.
"""


def request(*requirements: str, index_url: str | None = None, previous: str | None = None) -> ResolveRequest:
    return ResolveRequest(
        requirements=requirements, python="3.11", platform="linux/amd64", glibc="2.28",
        exclude_newer="2026-11-01T00:00:00Z", index_url=index_url, indexes=(), previous=previous,
    )  # fmt: skip


def test_the_causes_are_read_from_uvs_words() -> None:
    assert no_wheels(SDIST_ONLY) == [NoWheel(name="docopt", found=())]
    (pywin32,) = no_wheels(OTHER_PLATFORMS)
    assert pywin32.name == "pywin32"
    assert pywin32.found == (
        "wheels for cp36m, cp37m, cp38, cp39, cp310 (v302)",
        "wheels for win32, win_amd64, win_arm64 (v312)",
    )
    assert not_found(MISSPELT) == ["scikitlearn"]
    assert no_wheels(CONFLICT) == [] and not_found(CONFLICT) == []
    assert no_wheels(MISSPELT) == [] and not_found(SDIST_ONLY) == []


def test_a_package_without_wheels_names_it_and_the_ways_out() -> None:
    error = explain_failure(SDIST_ONLY, request("docopt"), [])
    assert error.message == "docopt has no wheel for Python 3.11 on linux/amd64 (manylinux_2_28)"
    assert error.hint is not None
    assert error.hint.startswith("envbuild installs wheels only")
    assert "pin a version of docopt that publishes a wheel for Python 3.11" in error.hint
    assert "choose another python" in error.hint
    assert 'replace = { "docopt" = "ANOTHER-PACKAGE" }' in error.hint
    assert "loosen" not in error.hint and error.details == SDIST_ONLY

    other = explain_failure(OTHER_PLATFORMS, request("pywin32"), [])
    assert other.message.startswith(
        "pywin32 has no wheel for Python 3.11 on linux/amd64 (manylinux_2_28) (the index has"
    )
    assert "wheels for win32, win_amd64, win_arm64 (v312)" in other.message


def test_a_transitive_package_without_wheels_points_at_what_pulls_it_in() -> None:
    error = explain_failure(
        SDIST_ONLY.replace("envbuild-variant depends on docopt", "hdfs depends on docopt"), request("hdfs"), []
    )
    assert error.hint is not None and "replace" not in error.hint
    assert "pin versions of the packages that pull docopt in" in error.hint


def test_an_unknown_name_suggests_the_nearest_names_of_the_index() -> None:
    """The default index's list comes from the cache (seeded by tests/conftest.py), never downloaded here."""
    error = explain_failure(MISSPELT, request("scikitlearn"), [])
    assert error.message == "the index (https://pypi.org/simple) has no package named scikitlearn"
    assert error.hint is not None and error.hint.startswith("did you mean scikit-learn")
    assert "? Fix the name in the spec" in error.hint and "loosen" not in error.hint


def test_offline_the_names_of_the_lock_and_the_spec_are_the_candidates() -> None:
    unreachable = "http://127.0.0.1:9/simple"
    previous = "numpy==2.1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n"
    error = explain_failure(
        MISSPELT.replace("scikitlearn", "numpyy"), request("numpyy", index_url=unreachable, previous=previous), []
    )
    assert error.message == f"the index ({unreachable}) has no package named numpyy"
    assert error.hint is not None and error.hint.startswith("did you mean numpy?")
    assert "~/.netrc" in error.hint  # a mirror that wants credentials answers "not found" too


def test_a_real_conflict_keeps_the_loosen_hint() -> None:
    error = explain_failure(CONFLICT, request("numpy<1.20", "pandas==2.2.3"), [])
    assert error.message == "the requirements cannot be satisfied together"
    assert error.hint is not None and error.hint.startswith("loosen the conflicting requirements named above")


def test_closest_names() -> None:
    pool = ["scikit-learn", "scikit-image", "sklearn", "numpy", "numpydoc", "pandas"]
    assert closest("scikitlearn", pool)[0] == "scikit-learn"
    assert "scikit-learn" not in closest("Scikit_Learn", pool)  # the name itself is no suggestion
    assert closest("numpyy", pool)[0] == "numpy"
    assert closest("tensorflow", pool) == ()


def test_the_project_list_is_fetched_from_the_index_root_once_a_day(tmp_path: Path) -> None:
    wheels = [make_wheel(tmp_path, name, "1.0") for name in ("scikit-learn", "scikit-image", "numpy")]
    with serve_index(wheels) as index:
        assert project_names(index.url) == ["numpy", "scikit-image", "scikit-learn"]
        assert nearest_names("scikitlearn", index_url=index.url) == ("scikit-learn",)
        assert nearest_names("scikit-imag", index_url=index.url) == ("scikit-image",)
        assert index.requests == ["/simple/"]  # the second question was answered by the cache
    cached = list(names.cache_dir().glob("*.json"))
    assert len(cached) >= 2  # the default index's seeded list and this one


def test_an_index_that_refuses_its_list_leaves_the_known_names(tmp_path: Path) -> None:
    with serve_index([make_wheel(tmp_path, "numpy", "1.0")], username="u", password="p") as index:
        assert project_names(index.url) is None
        assert nearest_names("numpyy", index_url=index.url, known=["numpy", "pandas"]) == ("numpy",)
