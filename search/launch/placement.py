"""Where a job array's workers may run: what several nodes need, checked before anything runs.

The tasks of a job array land on whatever nodes Slurm picks. Workers on several nodes share
the study's storage, its tracking store and its trials' checkpoints, so each must be one that
several machines can share:

- the storage and the tracking store: a database server (PostgreSQL), or for tracking an MLflow
  server (http://); a SQLite file is safe for several processes of one machine only (its locks
  do not hold over a network file system);
- the checkpoint store (`--checkpoint-dir`): `mlflow-artifacts:/PATH` (the tracking server's
  artifact store), an fsspec URL of a remote store (s3://, gs://, ...), or a folder on a network
  or parallel file system (NFS, Lustre, GPFS, BeeGFS, CephFS, ...), told by the type of the
  mount that holds it. The default `checkpoints` folder is relative to the launch's folder,
  which the tasks run in: shared where that folder is (a home on NFS), node-local elsewhere.

A retry on another node would find no checkpoint of a node-local folder and restart its
trial from scratch; SQLite over NFS corrupts. `--single-node` says that every task runs on one
node (a one-node cluster, or `--sbatch-line=--nodelist=NODE`) and skips these checks.
"""

from __future__ import annotations

import os
from pathlib import Path

from tunelab.search.adapters.checkpoint_stores import MLFLOW_SCHEME, scheme_of
from tunelab.search.adapters.tracking import is_server
from tunelab.search.spec import SpecError, StudySpec, without_password

SHARED_FILE_SYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "beegfs",
        "fuse.beegfs",
        "ceph",
        "cephfs",
        "fuse.ceph",
        "glusterfs",
        "fuse.glusterfs",
        "cifs",
        "smb3",
        "panfs",
        "wekafs",
        "afs",
        "orangefs",
        "pvfs2",
        "quobyte",
        "fuse.quobyte",
        "fuse.juicefs",
        "gfs2",
        "ocfs2",
    }
)
"""Mount types that every node of a cluster can mount as one file system."""
LOCAL_SCHEMES = frozenset({"file", "local", "memory"})
"""fsspec schemes of this machine's (or this process's) own storage."""
MOUNTINFO = Path("/proc/self/mountinfo")


def mount_type(path: Path, mountinfo: Path = MOUNTINFO) -> str | None:
    """The type of the file system holding `path` (its nearest existing folder), from the
    longest mount point above it; None where the mount table cannot be read (not Linux)."""
    folder = Path(os.path.abspath(path))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    folder = folder.resolve()
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        point = _unescape(parts[4])
        inside = str(folder) == point or str(folder).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, rest.split()[0]
    return kind


def _unescape(text: str) -> str:
    """A mountinfo field with its octal escapes (\\040 for a space) decoded."""
    return text.encode().decode("unicode_escape") if "\\" in text else text


def check_placement(
    spec: StudySpec, single_node: bool, workdir: Path, mountinfo: Path = MOUNTINFO
) -> None:
    """SpecError (one line) unless the study's storage, tracking store and checkpoints can be
    shared by workers on several nodes, or every task runs on one node (`single_node`)."""
    if single_node:
        return
    hint = "or --single-node when every task runs on one node"
    if spec.storage.startswith("sqlite"):
        raise SpecError(
            "--storage is SQLite, which workers on several hosts cannot share: PostgreSQL is "
            f"needed (--storage postgresql://USER@HOST/DB), {hint}"
        )
    tracking = spec.tracking_uri
    local = tracking.startswith(("sqlite", "file:")) or "://" not in tracking
    if local and not is_server(tracking):
        raise SpecError(
            f"--tracking-uri {without_password(tracking)} is a local MLflow store, which "
            "workers on several hosts cannot share: an MLflow server (http://) or PostgreSQL "
            f"is needed, {hint}"
        )
    location = spec.checkpoint_dir
    scheme = scheme_of(location)
    if scheme == MLFLOW_SCHEME or (scheme is not None and scheme not in LOCAL_SCHEMES):
        return
    if scheme is not None and scheme != "file":
        raise SpecError(
            f"--checkpoint-dir {location} lives in one process: a retry on another node could "
            f"not resume its trial; give mlflow-artifacts:/PATH, a shared folder, {hint}"
        )
    folder = Path(location.removeprefix("file://") if scheme == "file" else location)
    folder = folder if folder.is_absolute() else workdir / folder
    kind = mount_type(folder, mountinfo)
    if kind not in SHARED_FILE_SYSTEMS:
        where = f"a node-local {kind} file system" if kind else "a file system of unknown type"
        raise SpecError(
            f"--checkpoint-dir {folder} is on {where}: a trial retried on another node would "
            "restart from scratch; give a folder on a shared file system (NFS, Lustre, ...), "
            f"mlflow-artifacts:/PATH (the MLflow server's artifacts) or an fsspec URL, {hint}"
        )
