"""Settings of lineinspect, read from environment variables with the `LINEINSPECT_` prefix.

The same names are used by the CLI, the services, docker-compose.yml and the docs.
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

# ../shared/data beside the project checkout: where the real labelled data sets live.
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINEINSPECT_", extra="ignore")

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    # Real data sets (magnetic_tile, neu_det, hazelnut_toy); tests skip when absent.
    data_dir: Path = _PROJECT_ROOT.parent / "shared" / "data"
    # Threads torch may use for inference and training; 0 = torch's default (all cores).
    torch_threads: int = 0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def apply_torch_threads() -> None:
    """Limit torch's intra-op threads when LINEINSPECT_TORCH_THREADS is set (0 = torch's default)."""
    threads = get_settings().torch_threads
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
