"""The model store of one process, from the settings: its folders (``VIX_MODELS_DIR`` plus
``VIX_EXTRA_MODEL_PATHS``), the catalog (``VIX_MODELS_CATALOG``), what the folders hold and the downloads into them
(``VIX_DOWNLOAD_ALLOW_HOSTS``, ``HF_TOKEN``, ``CIVITAI_TOKEN``, ``VIX_MAX_CONCURRENT_DOWNLOADS``).

The composition roots (the service, a worker, the ``models`` command) build it here, one way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from visionatrix.config import InvalidSetting, Settings
from visionatrix.errors import ModelError
from visionatrix.models.catalog import ModelsCatalog, load_catalog, load_catalog_sync
from visionatrix.models.download import DownloadProgress
from visionatrix.models.extra_paths import model_folders
from visionatrix.models.folders import ModelFolders
from visionatrix.models.hosts import policy_from_settings
from visionatrix.models.installer import ModelInstaller
from visionatrix.models.inventory import ModelInventory


@dataclass
class ModelStore:
    folders: ModelFolders
    catalog: ModelsCatalog
    inventory: ModelInventory
    installer: ModelInstaller


def build_folders(settings: Settings) -> ModelFolders:
    """``ModelFolders`` of the settings; a bad ``VIX_EXTRA_MODEL_PATHS`` file is an ``InvalidSetting``."""
    try:
        return model_folders(settings.models_dir, settings.extra_model_paths)
    except ModelError as exc:
        raise InvalidSetting(f"VIX_EXTRA_MODEL_PATHS: {exc}") from None


async def read_catalog(settings: Settings) -> ModelsCatalog:
    try:
        return await load_catalog(settings.models_catalog)
    except ModelError as exc:
        raise InvalidSetting(f"VIX_MODELS_CATALOG: {exc}") from None


def read_catalog_sync(settings: Settings) -> ModelsCatalog:
    try:
        return load_catalog_sync(settings.models_catalog)
    except ModelError as exc:
        raise InvalidSetting(f"VIX_MODELS_CATALOG: {exc}") from None


def build_store(settings: Settings, catalog: ModelsCatalog, folders: ModelFolders | None = None, *,
                on_progress: Callable[[DownloadProgress], None] | None = None) -> ModelStore:
    folders = folders or build_folders(settings)
    policy = policy_from_settings(settings.download_allow_hosts, catalog.hosts(), hf_token=settings.hf_token,
                                  civitai_token=settings.civitai_token)
    installer = ModelInstaller(folders, catalog, policy, max_concurrent=settings.max_concurrent_downloads,
                               on_progress=on_progress)
    return ModelStore(folders, catalog, ModelInventory(folders, catalog, busy=installer.is_busy), installer)
