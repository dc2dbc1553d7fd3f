"""``chiffon config``: which files the configuration comes from, and changing the user's own file.

- ``chiffon config path``: every layer, lowest first, read / missing / not readable, and the names (never the
  values) of the environment variables that set configuration;
- ``chiffon config set KEY VALUE`` / ``unset KEY``: one dotted key of the user's file, validated as the whole
  configuration first (:mod:`chiffon.shared.config.edit`); a secret only from stdin (``VALUE`` ``-``);
- ``chiffon config get KEY`` / ``show``: the values in effect, secrets masked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from chiffon.orchestrator.cli.common import EXIT_ERROR, ConfigOpt, JsonOpt, err, out, settings_or_exit
from chiffon.shared.errors import ChiffonError

app = typer.Typer()
config_app = typer.Typer(help="Where configuration comes from; set keys in your own config file.",
                         no_args_is_help=True)
app.add_typer(config_app, name="config")

KeyArg = Annotated[str, typer.Argument(help="Dotted key, e.g. console.port, ansible.inventory, hosts.ai.address.")]
HostOpt = Annotated[str | None, typer.Option("--host", help="Host whose hosts/<host>.yaml apply (default "
                                                            "CHIFFON_HOST or this hostname).")]


def _fail(exc: ChiffonError, secret: str | None = None) -> typer.Exit:
    message = str(exc)
    if secret:
        for piece in {secret, secret.strip()} - {""}:
            message = message.replace(piece, "***")
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_ERROR)


def _known_key(key: str) -> tuple[tuple[str, ...], Any]:
    """``key`` split into its dotted parts, and the annotation of the field it names; exits 2 with the error
    (an unknown key names the allowed ones) otherwise."""
    from chiffon.shared.config.edit import field_annotation, parse_key

    try:
        parts = parse_key(key)
        return parts, field_annotation(parts)
    except ChiffonError as exc:
        raise _fail(exc) from None


@config_app.command("path")
def path_cmd(config: ConfigOpt = None, host: HostOpt = None, as_json: JsonOpt = False) -> None:
    """List the config files chiffon looks for, lowest first (later wins, key by key), and what became of each;
    then the environment variables that set configuration (names only)."""
    from chiffon.shared.config.files import config_env_names, discover_layers, this_host, user_config_path

    try:
        layers = discover_layers(config, host, strict=False)
    except ChiffonError as exc:
        raise _fail(exc) from None
    names = config_env_names()
    if as_json:
        out.print_json(json.dumps({
            "host": this_host(host), "user_file": str(user_config_path()), "environment": names,
            "layers": [{"layer": layer.label, "path": str(layer.path), "state": layer.state,
                        "detail": layer.detail} for layer in layers]}))
        return
    width = max(len(layer.label) for layer in layers)
    out.print("Config files, lowest first (a later one wins, key by key):", highlight=False)
    for layer in layers:
        state = layer.state + (f" ({layer.detail})" if layer.detail else "")
        if layer.explicit and layer.state != "read":
            state += ": chiffon refuses to start"
        out.print(f"  {layer.label:<{width}}  {layer.path}  {state}", highlight=False, markup=False,
                  soft_wrap=True)
    out.print(f"Each file may have hosts/{this_host(host)}.yaml beside it for this host, merged right after it.",
              highlight=False, markup=False)
    out.print("Environment (wins over every file): " + (", ".join(names) if names else "none"), highlight=False,
              markup=False, soft_wrap=True)
    out.print(f"`chiffon config set KEY VALUE` writes {user_config_path()}.", highlight=False, markup=False,
              soft_wrap=True)


@config_app.command("set")
def set_cmd(key: KeyArg,
            value: Annotated[str, typer.Argument(help="One line of YAML (7861, true, '[a, b]', prod); '-' reads it "
                                                      "from stdin, as a secret must be.")],
            config: ConfigOpt = None, host: HostOpt = None) -> None:
    """Set KEY to VALUE in your config file (created 0600), once the whole configuration it makes is valid: an
    unknown key or a bad value changes nothing and says what is allowed. A secret (a token, a password hash, a
    TOTP secret, notification URLs) is read from stdin only and never shown."""
    from chiffon.shared.config.edit import is_secret, parse_value

    parts, annotation = _known_key(key)
    secret = is_secret(annotation)
    if secret and value != "-":
        err.print(f"[bold red]error:[/] {escape(key)} is a secret: give it on stdin, not on the command line "
                  f"(shell history, the process list): `chiffon config set {escape(key)} -`", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(EXIT_ERROR)
    raw = _read_stdin(key, secret) if value == "-" else value
    try:
        parsed = parse_value(raw, annotation)
    except ChiffonError as exc:
        raise _fail(exc, raw if secret else None) from None
    _write(parts, parsed, config, host, raw if secret else None)


@config_app.command("unset")
def unset_cmd(key: KeyArg, config: ConfigOpt = None, host: HostOpt = None) -> None:
    """Remove KEY from your config file (the layers below it, or the default, apply again)."""
    parts, _ = _known_key(key)
    _write(parts, None, config, host, None)


def _read_stdin(key: str, secret: bool) -> str:
    """VALUE from stdin: asked without echo on a terminal, else its first line."""
    if sys.stdin.isatty():
        return str(typer.prompt(key, hide_input=secret))
    return sys.stdin.readline().rstrip("\r\n")


def _write(parts: tuple[str, ...], value: Any, config: Path | None, host: str | None, secret: str | None) -> None:
    """Write ``value`` (None: remove) at ``parts`` of the user file and say what happened (a secret never)."""
    from chiffon.shared.config.edit import overridden_by, set_in, write_user_file
    from chiffon.shared.config.files import discover_layers

    key = ".".join(parts)
    if value is None and not _in_user_file(parts):
        out.print(f"{key} is not set in your config file; nothing to remove", highlight=False, markup=False)
        return
    try:
        path = write_user_file(lambda data: set_in(data, parts, value), config_file=config, host=host)
        above = overridden_by(parts, discover_layers(config, host))
    except ChiffonError as exc:
        raise _fail(exc, secret) from None
    if value is None:
        out.print(f"removed {key} from {path}", highlight=False, markup=False, soft_wrap=True)
    else:
        shown = "(secret, not shown)" if secret is not None else json.dumps(value, default=str)
        out.print(f"set {key} = {shown} in {path}", highlight=False, markup=False, soft_wrap=True)
    if secret is not None:
        err.print(f"note: {path} is readable by your account (mode 0600), and so by any program you run; for a "
                  "service, put secrets in its own env file (/etc/chiffon/chiffon.env).", highlight=False,
                  soft_wrap=True)
    if above:
        err.print(f"note: {key} is also set by {', '.join(above)}, which wins over {path}", highlight=False,
                  markup=False, soft_wrap=True)


def _in_user_file(parts: tuple[str, ...]) -> bool:
    from chiffon.shared.config.edit import get_in
    from chiffon.shared.config.files import load_yaml_mapping, user_config_path

    try:
        get_in(load_yaml_mapping(user_config_path()), parts)
    except (KeyError, ChiffonError):
        return False
    return True


@config_app.command("get")
def get_cmd(key: KeyArg, config: ConfigOpt = None, host: HostOpt = None) -> None:
    """Print the value of KEY in effect (after every layer and the environment) as JSON; a secret masked."""
    from chiffon.shared.config.edit import get_in

    parts, _ = _known_key(key)
    settings = settings_or_exit(config, host=host)
    dumped = settings.model_dump(mode="json")
    try:
        value = get_in(dumped, parts)
    except KeyError:
        err.print(f"{key}: not set", highlight=False, markup=False)
        raise typer.Exit(1) from None
    out.print(json.dumps(value), highlight=False, markup=False, soft_wrap=True)


@config_app.command("show")
def show_cmd(config: ConfigOpt = None, host: HostOpt = None) -> None:
    """Print the whole configuration in effect as YAML, secrets masked, after the files it came from."""
    import yaml

    settings = settings_or_exit(config, host=host)
    out.print(f"# {settings.config_sources}", highlight=False, markup=False, soft_wrap=True)
    out.print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False, allow_unicode=True).rstrip(),
              highlight=False, markup=False, soft_wrap=True)
