"""Keys in the AWS shared-credentials format (`~/.aws/credentials`): INI sections holding
aws_access_key_id and aws_secret_access_key."""
from __future__ import annotations

import configparser
import os
import secrets
import string
from pathlib import Path


class CredentialsError(Exception):
    """The credentials file cannot be used; the message names it and the problem."""


def load(path: Path) -> dict[str, dict[str, str]]:
    """{profile: {"aws_access_key_id": ..., "aws_secret_access_key": ...}} for every complete profile."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path) as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as e:
        raise CredentialsError(f"{path}: {e}") from None
    profiles = {}
    for section in parser.sections():
        key, secret = parser[section].get("aws_access_key_id"), parser[section].get("aws_secret_access_key")
        if key and secret:
            profiles[section] = {"aws_access_key_id": key.strip(), "aws_secret_access_key": secret.strip()}
    if not profiles:
        raise CredentialsError(f"{path}: no profile with aws_access_key_id and aws_secret_access_key")
    return profiles


def secrets_by_key(profiles: dict[str, dict[str, str]]) -> dict[str, str]:
    return {p["aws_access_key_id"]: p["aws_secret_access_key"] for p in profiles.values()}


def create(path: Path) -> dict[str, str]:
    """A new [default] profile with random keys, written with mode 0600."""
    alphabet = string.ascii_uppercase + string.digits
    profile = {"aws_access_key_id": "AKPY" + "".join(secrets.choice(alphabet) for _ in range(16)),
               "aws_secret_access_key": secrets.token_urlsafe(30)[:40]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("[default]\n" + "".join(f"{k} = {v}\n" for k, v in profile.items()))
    return profile
