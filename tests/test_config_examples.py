"""config/ examples and `tenant-proxy check`: run as the installed console script, as a user would.

Every example (and the Deployment's config) passes `check`; `check` prints the effective
configuration with secrets masked; a broken config prints one line naming the field, exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.config import Settings
from tenant_proxy.settings_file import ConfigError, load_settings, parse_settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "config").glob("*.yaml"))
CHECKED = [*EXAMPLES, ROOT / "deploy" / "config.yaml"]
EXIT_CONFIG = 2

# The smallest valid document; broken shapes are variations of it.
VALID = {
    "tls": {"cert_file": "server.crt", "key_file": "server.key"},
    "upstream": {"kubeconfig": "upstream.kubeconfig"},
}


def cli() -> str:
    script = Path(sys.executable).parent / "tenant-proxy"
    assert script.exists(), "the tenant-proxy console script is not installed in this venv"
    return str(script)


def check(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Only this test's overrides: a TENANT_PROXY_* variable in the caller's shell must not leak in.
    base = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_PROXY_")}
    return subprocess.run(
        [cli(), "check", "--offline", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        check=False,
    )


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


# --- the examples -------------------------------------------------------------------------------


def test_every_expected_example_exists() -> None:
    names = {p.name for p in EXAMPLES}
    assert names >= {"minimal.yaml", "oidc.yaml", "in-cluster.yaml", "capsule.yaml"}


@pytest.mark.parametrize("config", CHECKED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_passes_check_and_prints_its_effective_settings(config: Path) -> None:
    result = check(config)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    printed = parse_settings(yaml.safe_load(result.stdout), environ={})
    assert printed == load_settings(config, environ={})


@pytest.mark.parametrize("config", EXAMPLES, ids=lambda p: p.name)
def test_example_explains_itself_in_comments(config: Path) -> None:
    first = config.read_text().splitlines()[0]
    assert first.startswith("# ")


def example(name: str) -> Settings:
    return load_settings(ROOT / "config" / name, environ={})


def test_minimal_example_uses_a_kubeconfig_and_client_certificates() -> None:
    settings = example("minimal.yaml")
    assert settings.upstream.kubeconfig is not None
    assert settings.upstream.in_cluster is False
    assert settings.authentication.x509 is True
    assert settings.tls.client_ca_file is not None
    assert settings.tenancy.tenants


def test_oidc_example_trusts_dex_and_keycloak_with_group_prefixes() -> None:
    issuers = {i.issuer_url: i for i in example("oidc.yaml").authentication.oidc}
    (dex,) = [i for url, i in issuers.items() if "dex" in url]
    (keycloak,) = [i for url, i in issuers.items() if "/realms/" in url]
    assert dex.username_claim == "email"
    assert keycloak.username_claim == "preferred_username"
    for issuer in (dex, keycloak):
        assert issuer.groups_claim == "groups"
        assert issuer.groups_prefix
    # Tenants name the prefixed groups, as the proxy sees them.
    groups = {g for t in example("oidc.yaml").tenancy.tenants for g in t.members.groups}
    assert groups == {f"{dex.groups_prefix}team-a", f"{keycloak.groups_prefix}team-b"}


def test_in_cluster_example_uses_the_pods_serviceaccount() -> None:
    upstream = example("in-cluster.yaml").upstream
    assert upstream.in_cluster is True
    assert upstream.kubeconfig is None
    assert upstream.server is None


def test_capsule_example_reads_capsule_tenants_and_their_label() -> None:
    tenancy = example("capsule.yaml").tenancy
    assert tenancy.capsule is True
    assert tenancy.namespace_label == "capsule.clastix.io/tenant"


# --- secrets are masked -------------------------------------------------------------------------

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJlLXNlY3JldC12YWx1ZQ"


def test_check_masks_a_secret_looking_value(tmp_path: Path) -> None:
    doc = {
        **VALID,
        "authentication": {
            "oidc": [
                {
                    "issuer_url": "https://issuer.example.com",
                    "audiences": ["kubernetes"],
                    "required_claims": {"api_token": TOKEN, "client_secret": "hunter2"},
                }
            ]
        },
    }
    result = check(write(tmp_path, doc))
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout
    assert "hunter2" not in result.stdout
    claims = yaml.safe_load(result.stdout)["authentication"]["oidc"][0]["required_claims"]
    assert claims == {"api_token": "***", "client_secret": "***"}


def test_check_shows_secret_file_paths_unmasked(tmp_path: Path) -> None:
    # A path is not a secret, and the operator needs to see which file will be read.
    doc = {**VALID, "upstream": {"server": "https://api:6443", "token_file": "/run/token"}}
    printed = yaml.safe_load(check(write(tmp_path, doc)).stdout)
    assert printed["tls"]["key_file"] == str(tmp_path / "server.key")
    assert printed["upstream"]["token_file"] == "/run/token"


def test_check_prints_environment_overrides_in_effect(tmp_path: Path) -> None:
    env = {
        "TENANT_PROXY_UPSTREAM__TOKEN_FILE": "/var/run/secrets/token",
        "TENANT_PROXY_LISTENER__ADDRESS": "0.0.0.0:8443",
    }
    result = check(write(tmp_path, VALID), env)
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["upstream"]["token_file"] == "/var/run/secrets/token"
    assert printed["listener"]["address"] == "0.0.0.0:8443"


# --- broken configs: one line naming the field, exit 2 ------------------------------------------

BROKEN: dict[str, tuple[object, str]] = {
    "unknown top-level key": ({**VALID, "listner": {"address": "0.0.0.0:1"}}, "listner"),
    "unknown nested key": (
        {**VALID, "tls": {**VALID["tls"], "cert_fle": "x"}},
        "tls.cert_fle",
    ),
    "wrong type": ({**VALID, "workers": "many"}, "workers"),
    "wrong type in a list": (
        {**VALID, "tenancy": {"tenants": [{"name": "a", "namespaces": "team-a"}]}},
        "tenancy.tenants.0.namespaces",
    ),
    "missing tls": ({"upstream": VALID["upstream"]}, "tls"),
    "bad address": ({**VALID, "listener": {"address": "localhost"}}, "listener.address"),
    "port out of range": (
        {**VALID, "admin": {"listener": {"address": "127.0.0.1:70000"}}},
        "admin.listener.address",
    ),
    "not a mapping": ("- tls\n- upstream\n", "(top level)"),
}


def assert_one_line_error(result: subprocess.CompletedProcess[str], field: str) -> None:
    assert result.returncode == EXIT_CONFIG
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{field}:" in lines[0]


@pytest.mark.parametrize(("doc", "field"), BROKEN.values(), ids=BROKEN.keys())
def test_broken_config_prints_one_line_naming_the_field(
    tmp_path: Path, doc: object, field: str
) -> None:
    assert_one_line_error(check(write(tmp_path, doc)), field)


def test_missing_config_file_prints_one_line_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert_one_line_error(check(missing), str(missing))


def test_bad_environment_override_is_named(tmp_path: Path) -> None:
    result = check(write(tmp_path, VALID), {"TENANT_PROXY_LISTENER__ADDRESS": "no-port"})
    assert_one_line_error(result, "listener.address")


def test_invalid_yaml_prints_one_line_naming_the_position(tmp_path: Path) -> None:
    config = write(tmp_path, "tls:\n  cert_file: [a\nupstream: {}\n")
    assert_one_line_error(check(config), str(config))


# --- the same property for any unknown key, in-process (pure parsing) ----------------------------

unknown_keys = st.from_regex(r"[a-z][a-z_]{0,20}", fullmatch=True).filter(
    lambda k: k not in Settings.model_fields
)


@given(key=unknown_keys)
def test_any_unknown_top_level_key_is_named_in_one_line(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({**VALID, key: 1}, environ={})
    message = str(caught.value)
    assert message.startswith(f"{key}: ")
    assert "\n" not in message


@given(port=st.integers(min_value=65536, max_value=10**9) | st.integers(max_value=-1))
def test_any_port_out_of_range_names_the_address(port: int) -> None:
    with pytest.raises(ConfigError, match=r"^listener\.address: "):
        parse_settings({**VALID, "listener": {"address": f"0.0.0.0:{port}"}}, environ={})
