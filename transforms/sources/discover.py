"""Find the logs under a URI and open them: MCAP files, rosbag2 folders and PhysicalAI-AV roots.

The search is recursive on any fsspec URL. A folder with `features.csv` is a PhysicalAI-AV root
(one log per clip id); a folder with `metadata.yaml` is a rosbag2 log (one log); elsewhere
every `*.mcap` file is a log. The search does not descend into a log.
"""

import posixpath
from dataclasses import dataclass

import fsspec

from schemas.reasons import Reason
from transforms.sources.base import LogReadError, LogSource
from transforms.sources.topic_map import DEFAULT, TopicMap

PAI_INDEX = "features.csv"
ROSBAG2_METADATA = "metadata.yaml"
MCAP_SUFFIX = ".mcap"


@dataclass(frozen=True)
class LogRef:
    """Where one log is. `kind` is "mcap" (a file or rosbag2 folder) or "pai" (a clip of a root)."""

    uri: str
    kind: str
    log_id: str  # the file or folder name without extension, or the PAI clip id
    vehicle_id: str  # the name of the folder holding the log (readers may know better)
    clip_id: str | None = None  # PAI only


def _name(path: str) -> str:
    return posixpath.basename(path.rstrip("/"))


def find_logs(uri: str) -> list[LogRef]:
    """Every log under `uri` (a log itself or a folder searched recursively), sorted by URI.

    Raises FileNotFoundError when `uri` does not exist.
    """
    from transforms.sources.pai import list_pai_clips

    fs, root = fsspec.core.url_to_fs(uri)
    root = root.rstrip("/") or "/"
    has_protocol = "://" in uri

    def url(path: str) -> str:
        return fs.unstrip_protocol(path) if has_protocol else path

    def mcap_ref(path: str) -> LogRef:
        name = _name(path)
        log_id = name[: -len(MCAP_SUFFIX)] if name.endswith(MCAP_SUFFIX) else name
        return LogRef(url(path), "mcap", log_id, _name(posixpath.dirname(path.rstrip("/"))) or "unknown")

    def pai_refs(path: str) -> list[LogRef]:
        vehicle = _name(path) or "unknown"
        try:
            clips = list_pai_clips(url(path))
        except LogReadError:  # a damaged root is one log that fails when opened
            return [LogRef(url(path), "pai", vehicle, vehicle)]
        return [LogRef(url(path), "pai", clip, vehicle, clip) for clip in clips]

    if not fs.exists(root):
        raise FileNotFoundError(f"no such file or folder: {uri}")
    if not fs.isdir(root):
        if not root.endswith(MCAP_SUFFIX):
            raise ValueError(f"{uri} is not a log: expected an .mcap file or a folder of logs")
        return [mcap_ref(root)]
    refs = []
    for folder, dirs, files in fs.walk(root, topdown=True):
        if PAI_INDEX in files:
            refs += pai_refs(folder)
            dirs[:] = []
        elif ROSBAG2_METADATA in files and any(f.endswith(MCAP_SUFFIX) for f in files):
            refs.append(mcap_ref(folder))
            dirs[:] = []
        else:
            refs += [mcap_ref(posixpath.join(folder, f)) for f in sorted(files) if f.endswith(MCAP_SUFFIX)]
            dirs.sort()
    return sorted(refs, key=lambda r: (r.uri, r.clip_id or ""))


def open_log(ref: LogRef, topic_map: TopicMap | None = None) -> LogSource:
    """The reader of one log; raises LogReadError when it cannot be opened."""
    if ref.kind == "pai":
        from transforms.sources.pai import PaiClipSource, list_pai_clips

        if ref.clip_id is None:
            list_pai_clips(ref.uri)  # raises the root's LogReadError
            raise LogReadError(Reason.LOG_UNREADABLE, f"{ref.uri}: no clip id")
        return PaiClipSource(ref.uri, ref.clip_id)
    from transforms.sources.mcap import McapLogSource

    return McapLogSource(ref.uri, topic_map or DEFAULT)
