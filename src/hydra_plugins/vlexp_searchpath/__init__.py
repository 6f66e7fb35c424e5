"""Makes the top-level `experiments/` folder the Hydra config group `experiment`.

Hydra maps a group to a sub-folder of a search-path root, but vlexp keeps its presets in
`experiments/` (plural, beside `conf/`). This config source serves that folder under the
group name `experiment`, from a checkout and from an installed wheel alike.
"""

from __future__ import annotations

from pathlib import Path

from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigResult
from hydra.plugins.search_path_plugin import SearchPathPlugin

GROUP = "experiment"


class ExperimentsConfigSource(FileConfigSource):
    """A file config source whose only group, `experiment`, is the experiments folder."""

    @staticmethod
    def scheme() -> str:
        return "vlexp-experiments"

    @staticmethod
    def _inner(config_path: str) -> str | None:
        parts = config_path.strip("/").split("/", 1)
        if parts[0] != GROUP:
            return None
        return parts[1] if len(parts) > 1 else ""

    def load_config(self, config_path: str) -> ConfigResult:
        return super().load_config(self._inner(config_path) or "")

    def available(self) -> bool:
        return super().is_group("")

    def is_group(self, config_path: str) -> bool:
        if config_path.strip("/") == "":  # the root, listed by --help
            return super().is_group("")
        inner = self._inner(config_path)
        return inner is not None and super().is_group(inner)

    def is_config(self, config_path: str) -> bool:
        inner = self._inner(config_path)
        return bool(inner) and super().is_config(inner)

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        if config_path.strip("/") == "":  # the root holds one group: `experiment` (--help)
            wanted = results_filter in (None, ObjectType.GROUP)
            return [GROUP] if wanted and super().is_group("") else []
        inner = self._inner(config_path)
        if inner is None:
            return []
        folder = Path(self.path) / inner
        names = []
        for entry in folder.iterdir():
            if entry.is_dir() and results_filter in (None, ObjectType.GROUP):
                names.append(entry.name)
            elif entry.suffix == ".yaml" and results_filter in (None, ObjectType.CONFIG):
                names.append(entry.stem)
        return sorted(set(names))


class VlexpSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from vlexp.paths import config_dir, experiments_dir

        # Plugins are global to the environment: only touch vlexp's own app.
        if any(entry.path.endswith(str(config_dir())) for entry in search_path.get_path()):
            search_path.append("vlexp", f"vlexp-experiments://{experiments_dir()}")
