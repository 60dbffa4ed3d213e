"""Which files under a folder are used, and which cannot be, each with why: names that are not
UTF-8, symbolic links that loop or lead nowhere, files and folders that cannot be read. The
folder dataset skips and names them; ``bvae check`` names them before `dvc repro`, whose own
hashing of ``prepare.data_root`` stops at them. No torch: ``bvae check`` runs it in a moment."""

import os
from pathlib import Path


FOLDER_LOOP = "a symbolic link to a folder inside data_root or above it (a loop): remove it"


def dvc_cannot_hash(unusable: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The entries of :func:`list_images` that stop DVC's hashing of the folder (DVC 3.6x: a
    file link that loops or leads nowhere, a name that is not UTF-8, an unreadable file or
    folder; a folder link it does not follow, so a loop of folders is the loader's concern only)."""
    return [(path, reason) for path, reason in unusable if reason != FOLDER_LOOP]


def shown(path: str) -> str:
    """A path as it can be printed: bytes of a name that is not UTF-8 as \\x escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def entry_problem(path: Path) -> str | None:
    """Why the file ``path`` cannot be used (None when it can): a name that is not UTF-8, a
    symbolic link that loops or leads nowhere, no read permission."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not UTF-8: rename it"
    if path.is_symlink() and not path.exists():
        return "a symbolic link that loops or leads nowhere: remove it or point it at an image"
    if not os.access(path, os.R_OK):
        return "not readable (permissions): chmod a+r it"
    return None


def list_images(
    root: Path, extensions: set[str]
) -> tuple[list[Path], list[tuple[str, str]], list[tuple[str, str]]]:
    """The sorted image files under ``root`` (a symbolic link to a folder outside ``root``
    followed); (path relative to ``root``, why) for every entry left out as not an image:
    hidden files and folders (a name starting with a dot: .DS_Store, .git/), files whose
    suffix is not in ``extensions``; and (path, reason) for every entry that cannot be used:
    a folder that cannot be read, a folder link that loops or leads back into ``root``, and
    the files of :func:`entry_problem`."""
    images, others, unusable = [], [], []
    top = Path(root).resolve()

    def rel(path) -> str:
        return shown(os.path.relpath(path, root))

    def unreadable_folder(e: OSError) -> None:
        unusable.append((rel(e.filename), f"a folder that cannot be read ({e.strerror}): chmod a+rx it"))

    walked = set()
    for folder, dirs, names in os.walk(root, onerror=unreadable_folder, followlinks=True):
        walked.add(Path(folder).resolve())
        keep = []
        for d in dirs:
            path = Path(folder) / d
            if d.startswith("."):
                others.append((rel(path) + "/", "a hidden folder"))
                continue
            target = path.resolve()
            if path.is_symlink() and (target in walked or target.is_relative_to(top)):
                unusable.append((rel(path), FOLDER_LOOP))
            elif problem := entry_problem(path):
                unusable.append((rel(path), problem))
            else:
                keep.append(d)
        dirs[:] = keep
        for name in names:
            path = Path(folder) / name
            if name.startswith("."):
                others.append((rel(path), "a hidden file"))
            elif problem := entry_problem(path):
                unusable.append((rel(path), problem))
            elif Path(name).suffix.lower() in extensions:
                images.append(path)
            else:
                others.append((rel(path), "not an image file"))
    return sorted(images), sorted(others), sorted(unusable)
