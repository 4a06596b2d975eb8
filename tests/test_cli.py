"""The command line (gateway/cli.py): check-config, and serve's argument handling (no serving)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main
from gateway.config import GatewayConfig

GOOD = """
routes:
  - name: demo
    provider: simulated
  - name: chat
    path: /chat
    provider: simulated
    format: ndjson
    fallbacks: [{provider: simulated}]
"""
BAD = """
routes:
  - name: demo
    provider: simulatd
    timeouts: {idel: 3s}
"""
SUMMARY = [
    "demo  POST /v1/stream/demo  provider=simulated  format=tokens",
    "chat  POST /chat  provider=simulated  format=ndjson  fallbacks=simulated",
]


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD, encoding="utf-8")
    return path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    return path


def test_check_config_ok(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(good)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == SUMMARY
    assert err == ""


def test_check_config_refuses_a_target_its_adapter_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider without the credentials it needs passed ``check-config`` (exit 0), and then
    start-up and reload refused the same file."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "gateway.yaml"
    route = {"name": "r", "provider": "bedrock", "options": {"region": "us-east-1"}}
    path.write_text(yaml.safe_dump({"routes": [route]}), encoding="utf-8")
    assert main(["check-config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("config error:\n  routes[0]: provider 'bedrock' needs"), err


def test_check_config_errors(bad: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == "config error:"
    assert lines[1].startswith("  routes[0].provider: unknown provider 'simulatd' (known: ")
    assert lines[2] == "  routes[0].timeouts.idel: unknown key (did you mean 'idle'?)"
    assert len(lines) == 3


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["check-config", str(missing)]) == 1
    assert capsys.readouterr().err == f"config error:\n  {missing}: config file not found\n"


def test_check_config_needs_a_path(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check-config"])
    assert info.value.code == 2


def test_python_dash_m(good: Path, bad: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(good)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (ok.returncode, ok.stdout.splitlines(), ok.stderr) == (0, SUMMARY, "")
    failed = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(bad)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.startswith("config error:\n  routes[0].")


def test_check_config_deeply_nested(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("x: " + "[" * 250 + "]" * 250 + "\n", encoding="utf-8")
    assert main(["check-config", str(deep)]) == 1
    assert capsys.readouterr().err == f"config error:\n  {deep}: invalid YAML: nested too deeply\n"


def test_port_in_use_is_one_line_and_exit_1(good: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(good), "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert served.returncode == 1
    assert served.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


@pytest.fixture
def fake_serve(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace ``gateway.cli.serve`` so the serve command can be checked without serving."""
    import gateway.cli

    calls: list[dict[str, Any]] = []

    def serve(config: GatewayConfig, **kwargs: Any) -> int:
        calls.append({"config": config, **kwargs})
        return 7

    monkeypatch.setattr(gateway.cli, "serve", serve)
    return calls


def test_serve_passes_options(good: Path, fake_serve: list[dict[str, Any]]) -> None:
    argv = ["--config", str(good), "--host", "0.0.0.0", "--port", "0", "--workers", "3"]
    assert main([*argv, "--log-level", "DEBUG"]) == 7
    (call,) = fake_serve
    assert [r.name for r in call.pop("config").routes] == ["demo", "chat"]
    assert call == {
        "config_path": str(good),
        "host": "0.0.0.0",
        "port": 0,
        "workers": 3,
        "log_level": "debug",
    }


def test_serve_defaults(good: Path, fake_serve: list[dict[str, Any]]) -> None:
    assert main(["--config", str(good)]) == 7
    (call,) = fake_serve
    assert (call["host"], call["port"], call["workers"], call["log_level"]) == (
        None,
        None,
        1,
        "info",
    )


def test_config_from_environment(
    good: Path, fake_serve: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_CONFIG", str(good))
    assert main([]) == 7
    assert fake_serve[0]["config_path"] == str(good)


def test_config_defaults_to_cwd(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_serve: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main([]) == 1
    assert capsys.readouterr().err == "config error:\n  config.yaml: config file not found\n"
    (tmp_path / "config.yaml").write_text(GOOD, encoding="utf-8")
    assert main([]) == 7
    assert fake_serve[0]["config_path"] == "config.yaml"


def test_serve_with_a_bad_config_does_not_serve(
    bad: Path, fake_serve: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(bad)]) == 1
    assert fake_serve == []
    assert capsys.readouterr().err.startswith("config error:\n  routes[0].")


@pytest.mark.parametrize(
    "argv", [["--port", "70000"], ["--port", "http"], ["--workers", "0"], ["--log-level", "loud"]]
)
def test_bad_arguments(argv: list[str], fake_serve: list[dict[str, Any]]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert fake_serve == []


def test_a_config_error_found_while_starting_is_reported_not_a_traceback(
    good: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import gateway.cli
    from gateway.errors import ConfigError

    def serve(config: GatewayConfig, **kwargs: Any) -> int:
        raise ConfigError("server.http_server: raw needs httptools")

    monkeypatch.setattr(gateway.cli, "serve", serve)
    assert main(["--config", str(good)]) == 1
    assert capsys.readouterr().err == ("config error:\n  server.http_server: raw needs httptools\n")


@pytest.mark.parametrize("key", ["upstream_client", "http_server"])
def test_raw_without_the_fast_extra_is_a_config_error_in_every_command(
    tmp_path: Path, key: str
) -> None:
    # check-config said OK, then serving died with a traceback while starting.
    path = tmp_path / "raw.yaml"
    path.write_text(f"server: {{{key}: raw, port: 0}}\n{GOOD}", encoding="utf-8")
    without_fast = (
        "import sys; sys.modules['httptools'] = None;"
        "from gateway.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    expected = (
        f"config error:\n  server.{key}: raw needs httptools, which is not installed "
        "(pip install 'llm-stream-gateway[fast]')\n"
    )
    for argv in (["check-config", str(path)], ["--config", str(path)]):
        done = subprocess.run(
            [sys.executable, "-c", without_fast, *argv], capture_output=True, text=True, timeout=60
        )
        assert (done.returncode, done.stdout, done.stderr) == (1, "", expected)
