"""`seqchat models`: list, inspect and compile bundles."""

from __future__ import annotations

import click

from seqchat.home import seqchat_home


@click.group(invoke_without_command=True)
@click.pass_context
def models(ctx: click.Context) -> None:
    """List the bundles seqchat can find ($SEQCHAT_HOME/bundles and shipped ones)."""
    if ctx.invoked_subcommand is not None:
        return
    from seqchat.bundle import list_bundles

    found = list_bundles()
    if not found:
        click.echo(f"no bundles found (user bundles go in {seqchat_home() / 'bundles'})")
    for name, directory, where in found:
        click.echo(f"{name}\t{where}\t{directory}")


@models.command("info")
@click.argument("name")
@click.option("--allow-external-paths", is_flag=True, help="Let the bundle name files outside itself.")
@click.option("--sha256sums", is_flag=True, help="Print only the sha256 lines, for 'sha256sum -c'.")
def models_info(name: str, allow_external_paths: bool, sha256sums: bool) -> None:
    """Print a bundle's config and the sha256 of each file it reads, as `sha256sum` writes
    them (digest, two spaces, the file's path)."""
    import yaml

    from seqchat.bundle import load_bundle

    bundle = load_bundle(name, allow_external_paths=allow_external_paths)
    files = bundle.weight_files()
    lines = [f"{digest}  {files[key]}" for key, digest in bundle.sha256s().items()]
    if not sha256sums:
        click.echo(f"# {bundle.name}: {bundle.root}")
        click.echo(yaml.safe_dump(bundle.config, sort_keys=False).rstrip())
        click.echo(f"# sha256 (to check them: seqchat models info {name} --sha256sums | sha256sum -c)")
    for line in lines:
        click.echo(line)


@models.command("compile")
@click.argument("name")
@click.option("--allow-external-paths", is_flag=True, help="Let the bundle name files outside itself.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the encoder's own Python code from its repository.")
def models_compile(name: str, allow_external_paths: bool, trust_remote_code: bool) -> None:
    """Compile a bundle's encoder and projector to ONNX, in the bundle: annotate then starts
    without PyTorch on a CPU."""
    from seqchat.bundle import compile_bundle, load_bundle

    bundle = load_bundle(
        name, allow_external_paths=allow_external_paths, trust_remote_code=trust_remote_code
    )
    for path in compile_bundle(bundle):
        click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
