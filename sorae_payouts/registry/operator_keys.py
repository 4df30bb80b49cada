"""Where an operator's private key lives: SORAE_OPERATOR_KEY, read by the CLI of the person acting.

SORAE_OPERATOR_KEY is one of:
- a path to the PEM file `sorae-payouts operators keygen --out FILE` wrote (mode 0600, the person's own);
- `env:VAR`: the PEM text is the value of the environment variable VAR;
- `secrets:<entry>`: the PEM text is the string under <entry> in the JSON object file SORAE_SECRETS_FILE.
The key never leaves the process that reads it: the engine stores public keys only, and every error
here names the reference (the path, `env:VAR`), never the content. Nothing puts the reference in run
config: the Dagster jobs take a signature made by the CLI, not a key (see `month_end/approvals.py`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.signing import SigningKey

OPERATOR_KEY_SETTING = "SORAE_OPERATOR_KEY"
SECRETS_FILE_SETTING = "SORAE_SECRETS_FILE"  # the same file paying accounts use (registry/paying_accounts.py)


class OperatorKeyError(PayoutRefused):
    """The operator's key cannot be read; the message names where it was looked for, never its content."""


def load_operator_key(reference: str | None = None) -> SigningKey:
    """The private key named by `reference`, else by SORAE_OPERATOR_KEY."""
    ref = (reference if reference is not None else os.environ.get(OPERATOR_KEY_SETTING) or "").strip()
    if not ref:
        raise OperatorKeyError(
            f"{OPERATOR_KEY_SETTING} is not set: point it at your operator key file (created once with "
            "`sorae-payouts operators keygen --out FILE`), or env:VAR / secrets:<entry>"
        )
    kind, _, name = ref.partition(":")
    if kind == "env" and name:
        value = os.environ.get(name)
        if not value:
            raise OperatorKeyError(f"{OPERATOR_KEY_SETTING}={ref}: the environment variable {name} is not set")
        return SigningKey.from_pem(value, source=ref)
    if kind == "secrets" and name:
        return SigningKey.from_pem(_secrets_entry(ref, name), source=ref)
    path = Path(ref).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise OperatorKeyError(f"{OPERATOR_KEY_SETTING}: no key file at {path}") from None
    except OSError as exc:
        raise OperatorKeyError(f"{OPERATOR_KEY_SETTING}: the key file {path} cannot be read ({exc.strerror})") from None
    return SigningKey.from_pem(data, source=str(path))


def _secrets_entry(ref: str, entry: str) -> str:
    # The same lookup as paying_accounts' secrets (a JSON object file), with its own messages: kept
    # apart so a key of one kind is never read through the other's error paths.
    path = os.environ.get(SECRETS_FILE_SETTING)
    if not path:
        raise OperatorKeyError(f"{OPERATOR_KEY_SETTING}={ref}: {SECRETS_FILE_SETTING} is not set")
    try:
        with open(path, encoding="utf-8") as file:
            secrets = json.load(file)
    except (OSError, ValueError):
        raise OperatorKeyError(
            f"{OPERATOR_KEY_SETTING}={ref}: the secrets file {path} cannot be read as a JSON object"
        ) from None
    value = secrets.get(entry) if isinstance(secrets, dict) else None
    if not isinstance(value, str):
        raise OperatorKeyError(f"{OPERATOR_KEY_SETTING}={ref}: the secrets file {path} has no text entry {entry!r}")
    return value


def write_private_key(key: SigningKey, path: Path) -> Path:
    """Write the private key to a NEW file readable by its owner only (0600); never overwrites one."""
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise OperatorKeyError(
            f"{path} already exists; a key file is never overwritten (choose another path)"
        ) from None
    except OSError as exc:
        raise OperatorKeyError(f"cannot create the key file {path} ({exc.strerror})") from None
    with os.fdopen(fd, "wb") as file:
        file.write(key.pem())
    os.chmod(path, 0o600)  # whatever the umask did
    return path
