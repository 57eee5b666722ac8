"""The project home and every path derived from it, in one place.

One rule picks the home: ``--home``, else ``$TFX_CANARY_HOME``, else ``./.home``. Under it live the data
spans, every pipeline's outputs, the one ML Metadata database, the serving directory TF Serving reads,
the release snapshots, the logs and the scheduler's state. Paths are plain strings so that the data,
pipeline and serving roots can be ``gs://`` URIs (Vertex AI) where the code reads them through
``tf.io.gfile`` or the release store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

HOME_ENV = "TFX_CANARY_HOME"
DEFAULT_HOME = ".home"
HOME_HELP = f"project home (default ${HOME_ENV} or ./{DEFAULT_HOME})"
METADATA_FILE = "metadata.sqlite"
DEFAULT_DATASET = "taxi"


def is_uri(path: str) -> bool:
    """True for object-store paths such as ``gs://bucket/dir``."""
    return "://" in path


def join(root: str, *parts: str) -> str:
    """``root/part/...`` for local paths and URIs alike (POSIX separators)."""
    return "/".join([root.rstrip("/"), *parts]) if is_uri(root) else os.path.join(root, *parts)


def absolute(path: str) -> str:
    """A local path made absolute; a URI as it is (without a trailing slash)."""
    return path.rstrip("/") if is_uri(path) else os.path.abspath(path)


@dataclass(frozen=True)
class Home:
    """Where one project keeps everything; the three roots may point elsewhere (``gs://`` on Vertex)."""

    root: str
    data_root: str = ""  # span-<N>/ folders of CSV; default <root>/data/taxi
    pipelines_root: str = ""  # one folder per pipeline; default <root>/pipelines
    serving_root: str = ""  # models.config and <model>/<version>/ folders; default <root>/serving

    def __post_init__(self) -> None:
        root = absolute(os.fspath(self.root))
        object.__setattr__(self, "root", root)
        defaults = {
            "data_root": join(root, "data", DEFAULT_DATASET),
            "pipelines_root": join(root, "pipelines"),
            "serving_root": join(root, "serving"),
        }
        for name, default in defaults.items():
            value = os.fspath(getattr(self, name) or default)
            object.__setattr__(self, name, absolute(value))

    @classmethod
    def resolve(cls, given: str | os.PathLike | None = None, **roots: str) -> Home:
        """The home named by ``--home`` (``given``), else ``$TFX_CANARY_HOME``, else ``./.home``."""
        return cls(os.fspath(given) if given else os.environ.get(HOME_ENV) or DEFAULT_HOME, **roots)

    def pipeline_root(self, pipeline_name: str) -> str:
        return join(self.pipelines_root, pipeline_name)

    def model_dir(self, model: str) -> str:
        """Where the versions of one served model land: ``<serving_root>/<model>/<version>``."""
        return join(self.serving_root, model)

    @property
    def metadata_path(self) -> str:
        """One MLMD SQLite database for every pipeline and the release tooling."""
        return join(self.root, METADATA_FILE)

    @property
    def releases_dir(self) -> str:
        """A copy of every config generation and canary analysis, per model."""
        return join(self.root, "releases")

    @property
    def logs_dir(self) -> str:
        return join(self.root, "logs")

    def log_file(self, name: str) -> str:
        return join(self.logs_dir, f"{name}.log")

    @property
    def scheduler_dir(self) -> str:
        return join(self.root, "scheduler")
