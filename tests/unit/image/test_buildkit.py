"""The BuildKit recipe's pieces that need no daemon: shell quoting, bad input to normalize and to the options.

The recipe itself, run with a real dockerd and normalised, is tested in
tests/integration/image/test_docker_builder.py.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from pathlib import Path

import pytest

from envbuild.cli.main import main
from envbuild.image.buildkit import Command
from support.specs import write_spec


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_spec(tmp_path)
    return tmp_path


def test_printed_commands_are_the_argument_lists_in_shell_words() -> None:
    """What a shell reads back from a printed command is its exact argument list and environment."""
    argv = ("docker", "build", "--build-arg", "REVISION=it's $HOME; `x`", "--file", "images/a b.Dockerfile", ".")
    command = Command(argv=argv, env=(("DOCKER_BUILDKIT", "1"), ("SOURCE_DATE_EPOCH", "1793620800")))
    words = shlex.split(command.shell().replace("\\\n", " "))
    assert words == ["DOCKER_BUILDKIT=1", "SOURCE_DATE_EPOCH=1793620800", *argv]
    assert "\\\n  --file" in command.shell()  # a long command: one option per line
    assert Command(argv=("docker", "load", "--input", "x.tar")).shell() == "docker load --input x.tar"


def test_normalize_refuses_a_file_that_is_no_image_archive(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "built.tar").write_bytes(b"not a tar at all\n" * 100)
    assert main(["-C", str(project), "normalize", str(project / "built.tar"), "--variant", "cpu-infer",
                 "-o", str(project / "out")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "is not an image archive envbuild can read" in err and "docker save" in err
    assert "Traceback" not in err and not (project / "out").exists()


def test_normalize_refuses_a_tar_that_holds_no_image(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    (project / "built.tar").write_bytes(buffer.getvalue())
    assert main(["-C", str(project), "normalize", str(project / "built.tar"), "--variant", "cpu-infer",
                 "-o", str(project / "out")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "neither a 'docker save' archive nor an OCI archive" in err and "Traceback" not in err


def test_normalize_never_replaces_a_directory_that_is_no_layout(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "built.tar").write_bytes(b"")
    keep = project / "results"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine\n")
    assert main(["-C", str(project), "normalize", str(project / "built.tar"), "--variant", "cpu-infer",
                 "-o", str(keep)]) == 2  # fmt: skip
    assert "exists and is not an OCI layout" in capsys.readouterr().err
    assert (keep / "notes.txt").read_text() == "mine\n"


def test_normalize_names_an_unknown_variant(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "built.tar").write_bytes(b"")
    assert main(["-C", str(project), "normalize", str(project / "built.tar"), "--variant", "cpu-infre",
                 "-o", str(project / "out")]) == 2  # fmt: skip
    assert "unknown variant 'cpu-infre'" in capsys.readouterr().err


def test_normalize_names_a_platform_the_spec_does_not_build(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "built.tar").write_bytes(b"")
    assert main(["-C", str(project), "normalize", str(project / "built.tar"), "--variant", "cpu-infer",
                 "--platform", "linux/arm64", "-o", str(project / "out")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "the spec does not build for linux/arm64" in err and "its platforms are linux/amd64" in err


def test_normalize_takes_one_platform(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "built.tar").write_bytes(b"")
    twice = ["--platform", "linux/amd64", "--platform", "linux/amd64"]
    assert main(["-C", str(project), "normalize", str(project / "built.tar"), "--variant", "cpu-infer",
                 *twice, "-o", str(project / "out")]) == 2  # fmt: skip
    assert "one platform at a time" in capsys.readouterr().err
    assert not (project / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variant", "cpu-infer"], "--variant, --platform and --buildx go with --print-build-command"),
        (["--buildx"], "--variant, --platform and --buildx go with --print-build-command"),
        (["--print-build-command", "--check"], "--print-build-command and --check do different things"),
        (["--print-build-command", "--variant", "gpu-infer"], "unknown variant 'gpu-infer'"),
        (["--platform", "linux/arm64"], "--variant, --platform and --buildx go with --print-build-command"),
        (["--print-build-command", "--platform", "linux/arm64"], "the spec does not build for linux/arm64"),
        (
            ["--print-build-command", "--platform", "linux/amd64", "--platform", "linux/arm64"],
            "--platform linux/amd64 and linux/arm64: BuildKit's commands are for one platform at a time",
        ),
    ],
)
def test_print_build_command_options_misused(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Misused options are a usage error before anything is staged."""
    assert main(["-C", str(project), "dockerfile", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (project / ".envbuild").exists()
