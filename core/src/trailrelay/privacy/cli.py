"""``trailrelay reveal``: say which candidate value a pseudonym token stands for."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import click
import orjson

from trailrelay.errors import ConfigError
from trailrelay.privacy.config import KeySettings, PrivacyConfig
from trailrelay.privacy.keys import Key, load_key
from trailrelay.privacy.reveal import DEFAULT_MAX_CANDIDATES, candidates, find_tokens, reveal
from trailrelay.privacy.tokens import Tokenizer

__all__ = ["read_privacy_config", "reveal_command"]

EXIT_CONFIG = 2


def read_privacy_config(path: Path) -> PrivacyConfig:
    """The ``[privacy]`` table of a config file (only that table: no sink plugin is needed)."""
    from trailrelay.config import _interpolate  # noqa: PLC0415 - the same ${...} rules as the config

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    table = raw.get("privacy")
    if not isinstance(table, dict):
        raise ConfigError(f"{path} has no [privacy] table")
    return PrivacyConfig.validate(_interpolate(table, "privacy"), where="privacy")


def _key_settings(opts: dict[str, Any]) -> KeySettings:
    return KeySettings.validate({k: v for k, v in opts.items() if v is not None}, where="privacy")


@click.command("reveal")
@click.argument("tokens", nargs=-1, required=True)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Take the key (and pseudonym domains) from this config's [privacy] table.",
)
@click.option("--key-env", help="Environment variable holding the key.")
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), help="File holding the key.")
@click.option("--key-secret-arn", help="AWS Secrets Manager secret holding the key.")
@click.option("--key-secret-json-key", help="Member of a JSON secret that holds the key.")
@click.option("--key-kms-ciphertext", help="Base64 KMS ciphertext of the key.")
@click.option("--key-region", help="Region for Secrets Manager / KMS (not with --config).")
@click.option(
    "--key-encoding",
    type=click.Choice(["raw", "base64", "hex"]),
    help="How the key is written (not with --config: its [privacy] table says so).",
)
@click.option("--value", "values", multiple=True, help="A candidate value (repeatable).")
@click.option(
    "--candidates",
    "files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A file of candidate values, one per line (repeatable).",
)
@click.option("--cidr", "cidrs", multiple=True, help="Try every address of this range, e.g. 10.1.0.0/16.")
@click.option(
    "--domain", "domains", multiple=True, help="Pseudonym domain(s) to try (default: the config's)."
)
@click.option("--max-candidates", default=DEFAULT_MAX_CANDIDATES, show_default=True, help="Largest CIDR.")
def reveal_command(
    tokens: tuple[str, ...],
    config_path: Path | None,
    *,
    values: tuple[str, ...],
    files: tuple[Path, ...],
    cidrs: tuple[str, ...],
    domains: tuple[str, ...],
    max_candidates: int,
    **key_opts: Any,
) -> None:
    """Say which candidate value each pseudonym TOKEN stands for (needs the key).

    TOKENS may be bare tokens (tr1_...) or whole values that contain them (an ARN); a word that
    starts with tr1_ but is not a whole token is an error. Prints one JSON line per token:
    {"token", "value", "domain"}, value null when no candidate matched. Exits 0 when every
    token was matched, 1 when some were not, 2 on a usage or configuration error.
    """
    try:
        wanted = find_tokens(tokens)
        _require(bool(wanted), "no tr1_ token in the arguments")
        _require(
            bool(values or files or cidrs), "give candidates: --value, --candidates FILE or --cidr RANGE"
        )
        key, doms = _key_and_domains(config_path, key_opts, set(domains))
        pool = candidates(values, files, cidrs, max_candidates=max_candidates)
        result = reveal(wanted, pool, Tokenizer(key), doms)
    except (ConfigError, ValueError, OSError) as exc:
        click.echo(f"reveal: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None
    out = sys.stdout.buffer
    for m in result.matches:
        out.write(orjson.dumps({"token": m.token, "value": m.value, "domain": m.domain}) + b"\n")
    for token in result.unmatched:
        out.write(orjson.dumps({"token": token, "value": None, "domain": None}) + b"\n")
    out.flush()
    click.echo(
        f"reveal: {len(wanted) - len(result.unmatched)} of {len(wanted)} token(s) matched, "
        f"{result.tried:,} candidate(s) tried, key {key.fingerprint} from {key.source}",
        err=True,
    )
    raise SystemExit(0 if not result.unmatched else 1)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _key_and_domains(
    config_path: Path | None, key_opts: dict[str, Any], domains: set[str]
) -> tuple[Key, set[str]]:
    """The key from the config's [privacy] table or from --key-* options, and the domains to try."""
    given = {k: v for k, v in key_opts.items() if v is not None}
    if config_path is not None:
        _require(
            not given,
            "give either --config or --key-* options, not both (with --config, its [privacy] table "
            "says where the key is, how it is written and in which region)",
        )
        config = read_privacy_config(config_path)
        key = load_key(config, config_path.resolve().parent)
        domains = domains or config.domains()
    else:
        key = load_key(_key_settings(given))
    if key is None:
        raise ConfigError(
            "no key: give --config or one of --key-env, --key-file, --key-secret-arn, --key-kms-ciphertext"
        )
    return key, domains or {""}
