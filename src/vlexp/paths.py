"""Where vlexp finds its config groups and keeps its caches (no heavy imports here)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = PACKAGE_DIR.parent.parent


def _shipped_or_checkout(name: str) -> Path:
    # A wheel carries conf/ and experiments/ inside the package; a checkout (editable
    # install) keeps them at the repository root, lightning-hydra-template style.
    shipped = PACKAGE_DIR / name
    return shipped if shipped.is_dir() else _REPO_ROOT / name


def config_dir() -> Path:
    """The directory holding `config.yaml` and the config groups."""
    return _shipped_or_checkout("conf")


def experiments_dir() -> Path:
    """The directory holding the `experiment=NAME` presets."""
    return _shipped_or_checkout("experiments")


def cache_dir() -> Path:
    """Root of vlexp's caches (tiny model, generated data): `$VLEXP_CACHE` or ~/.cache/vlexp."""
    return Path(os.environ.get("VLEXP_CACHE", Path.home() / ".cache" / "vlexp")).expanduser()


def private_temp(target: Path) -> Path:
    """A new empty file beside `target` that no other process, thread or machine shares: write
    it, then `os.replace` it onto `target` (a reader sees the old file or the whole new one).

    A random name created with O_EXCL, which NFS v3+, Lustre and GPFS honour across machines;
    a name made of the pid alone repeats on the nodes of a multi-node job, and one fixed name
    (`x.part`) is written by every rank at once. Not `tempfile.mkstemp`: its files are
    private (0600), and the renamed file must keep the umask's permissions as before."""
    import secrets

    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = target.parent / f".{target.name}.{secrets.token_hex(8)}.part"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:
            continue


# --- cache integrity: what was built, with sizes and hashes -------------------------------
MANIFEST = "vlexp-manifest.json"
_NOT_CONTENT = {MANIFEST, "DONE", ".lock"}


def write_manifest(folder: Path, required: tuple[str, ...] = ()) -> None:
    """Record the size and SHA-256 of every file under `folder` (after building it), and the
    files the entry must have. Refuses an entry that lacks one of `required`: a manifest
    written over an incomplete entry would make the cache check accept it for good."""
    import json

    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(
            f"cache entry {folder} was built without {', '.join(missing)}; not recording it "
            "as complete (delete the folder and run again; report this as a bug)"
        )
    files = {name: list(_fingerprint(folder / name)) for name in _content(folder)}
    manifest = {"required": sorted(required), "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=0, sort_keys=True) + "\n")


def cache_problem(folder: Path, required: tuple[str, ...] = ()) -> str | None:
    """Why the cache entry `folder` cannot be trusted (a required file missing, or a file
    missing, truncated or changed since `write_manifest`), or None when every file matches.
    `required` adds to what the manifest lists: an entry recorded by an older vlexp over an
    incomplete build is rejected too."""
    import json

    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return f"no {MANIFEST} (built by an older vlexp, or cut off while building)"
    except (OSError, ValueError) as err:
        return f"{MANIFEST} unreadable ({err})"
    # Manifests before 2026-12 were the flat {name: [size, digest]} mapping.
    files = manifest.get("files", manifest) if isinstance(manifest, dict) else {}
    for name in sorted({*required, *manifest.get("required", ())}):
        if not (folder / name).is_file():
            return f"{name} is missing (the entry was never complete)"
    for name, (size, digest) in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        actual_size, actual_digest = _fingerprint(path)
        if actual_size != size:
            return f"{name} is {actual_size} bytes, {size} when built"
        if actual_digest != digest:
            return f"{name} changed since it was built (SHA-256 differs)"
    return None


def _content(folder: Path) -> list[str]:
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and path.name not in _NOT_CONTENT and not path.name.endswith(".lock")
    )


def _fingerprint(path: Path) -> tuple[int, str]:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return path.stat().st_size, digest.hexdigest()


def whole_png(path: Path) -> bool:
    """A PNG that was written to its end (its last chunk, IEND, is there): a cheap check
    for cache files cut short by a kill or a full disk."""
    try:
        with path.open("rb") as handle:
            if handle.read(8) != b"\x89PNG\r\n\x1a\n":
                return False
            handle.seek(-12, os.SEEK_END)
            return handle.read(12) == b"\x00\x00\x00\x00IEND\xaeB`\x82"
    except OSError:
        return False
