"""A program's paying account: its key resolved from a reference, never shown; its gateway."""

from __future__ import annotations

import json

import pytest

from sorae_payouts.registry.paying_accounts import (
    SECRETS_FILE_SETTING,
    PayingAccountError,
    program_gateway_config,
    require_program_gateway,
    resolve_api_key,
)
from sorae_payouts.registry.programs import Program
from sorae_payouts.stripe_gateway import GatewayConfig, StripeGateway

PLATFORM_KEY = "sk_test_platform_0000"
ACME_KEY = "sk_test_acme_secret_1234"


def _program(ref: str | None) -> Program:
    return Program("acme", "Acme", ref)


def test_a_program_without_reference_pays_with_the_platform_key():
    assert resolve_api_key(_program(None), PLATFORM_KEY) == PLATFORM_KEY


def test_env_reference_reads_the_variable(monkeypatch):
    monkeypatch.setenv("ACME_STRIPE_KEY", ACME_KEY)
    assert resolve_api_key(_program("env:ACME_STRIPE_KEY"), PLATFORM_KEY) == ACME_KEY


def test_missing_variable_is_named_by_its_reference(monkeypatch):
    monkeypatch.delenv("ACME_STRIPE_KEY", raising=False)
    with pytest.raises(PayingAccountError, match="env:ACME_STRIPE_KEY.*ACME_STRIPE_KEY is not set"):
        resolve_api_key(_program("env:ACME_STRIPE_KEY"), PLATFORM_KEY)


def test_secrets_reference_reads_the_entry_of_the_json_file(tmp_path, monkeypatch):
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"acme": ACME_KEY, "other": "sk_test_other_1"}))
    monkeypatch.setenv(SECRETS_FILE_SETTING, str(path))
    assert resolve_api_key(_program("secrets:acme"), PLATFORM_KEY) == ACME_KEY


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"other": "sk_test_other_1"}, "has no entry 'acme'"),
        (["sk_test_acme_secret_1234"], "must hold a JSON object"),
        ('{"acme": "sk_test_acme_secret_1234",', "is not valid JSON"),
        ({"acme": "pk_test_acme_secret_1234"}, "not a Stripe secret key"),
        ({"acme": 42}, "not a Stripe secret key"),
    ],
)
def test_secrets_file_problems_name_the_reference_and_never_a_value(tmp_path, monkeypatch, content, expected):
    path = tmp_path / "secrets.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    monkeypatch.setenv(SECRETS_FILE_SETTING, str(path))
    with pytest.raises(PayingAccountError, match=expected) as refused:
        resolve_api_key(_program("secrets:acme"), PLATFORM_KEY)
    message = str(refused.value)
    assert "secrets:acme" in message and "acme_secret_1234" not in message and "other_1" not in message
    error = refused.value  # no parser error (which may quote the file) chained to it
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_missing_secrets_file_or_setting(tmp_path, monkeypatch):
    monkeypatch.delenv(SECRETS_FILE_SETTING, raising=False)
    with pytest.raises(PayingAccountError, match=f"secrets:acme: {SECRETS_FILE_SETTING} is not set"):
        resolve_api_key(_program("secrets:acme"), PLATFORM_KEY)
    monkeypatch.setenv(SECRETS_FILE_SETTING, str(tmp_path / "absent.json"))
    with pytest.raises(PayingAccountError, match="absent.json .*does not exist"):
        resolve_api_key(_program("secrets:acme"), PLATFORM_KEY)


def test_a_variable_holding_something_else_than_a_key_is_refused_without_showing_it(monkeypatch):
    monkeypatch.setenv("ACME_STRIPE_KEY", "hunter2-not-a-key")
    with pytest.raises(PayingAccountError) as refused:
        resolve_api_key(_program("env:ACME_STRIPE_KEY"), PLATFORM_KEY)
    assert "hunter2" not in str(refused.value) and "env:ACME_STRIPE_KEY" in str(refused.value)


def test_program_gateway_keeps_the_platform_settings_with_the_program_key(monkeypatch):
    monkeypatch.setenv("ACME_STRIPE_KEY", ACME_KEY)
    base = GatewayConfig(
        PLATFORM_KEY, "http://127.0.0.1:1", max_network_retries=1, timeout_seconds=3, rate_limit_per_second=7
    )
    config = program_gateway_config(base, _program("env:ACME_STRIPE_KEY"))
    assert config.api_key == ACME_KEY
    assert (config.api_base, config.max_network_retries, config.timeout_seconds, config.rate_limit_per_second) == (
        "http://127.0.0.1:1",
        1,
        3,
        7,
    )
    assert ACME_KEY not in repr(config)
    assert program_gateway_config(base, _program(None)) is base
    # A gateway holding another key is refused for the program (never paid from the wrong account).
    with pytest.raises(PayingAccountError, match="holds another key"):
        require_program_gateway(_program("env:ACME_STRIPE_KEY"), StripeGateway(base))
    require_program_gateway(_program("env:ACME_STRIPE_KEY"), StripeGateway(config))
