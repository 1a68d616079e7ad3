"""Settings of lineinspect, read from environment variables with the `LINEINSPECT_` prefix.

The same names are used by the CLI, the services, docker-compose.yml and the docs
(docs/line.md lists them all).
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lineinspect.shared.allocator import hold_freed_memory

# ../shared/data beside the project checkout: where the real labelled data sets live.
_PROJECT_ROOT = Path(__file__).resolve().parent.parent

MIB = 1 << 20


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINEINSPECT_", extra="ignore")

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    # Real data sets (magnetic_tile, neu_det, hazelnut_toy); tests skip when absent.
    data_dir: Path = _PROJECT_ROOT.parent / "shared" / "data"
    # Threads torch may use for inference and training; 0 = torch's default (all cores).
    torch_threads: int = 0
    hold_freed_memory: bool = Field(
        True,
        description=(
            "Processes that run the networks keep freed memory for the next batch instead of returning it to the "
            "system (glibc's mmap and trim thresholds at 1 GiB; see shared/allocator.py): NEU-DET detector "
            "inference 36-43 -> 46-58 images/s in a fresh process on a 2-core EPYC, at the cost of the process keeping its peak memory."
        ),
    )
    # Number format of the networks: bfloat16 where the CPU has it natively (auto), else float32.
    compute_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Number format the networks compute in: auto = bfloat16 on CPUs with AVX512-BF16 or AMX, else float32.",
    )

    # ---- the line ---------------------------------------------------------------------
    line_id: str = Field("line-1", description="Production line this deployment serves; in every frame and verdict.")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port].")
    topic_prefix: str = Field("lineinspect.", description="Prefix of every topic name.")
    partitions: int = Field(4, ge=1, description="Partitions per topic when lineinspect creates the topics.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for the verdict cache and stage health.")
    packages: Path = Field(
        Path("packages"),
        description="Model packages of the line: routing.json, or one folder per stage (mask, anomaly, reviewer).",
    )
    # Frames larger than this are refused to the dead-letter topic. Results add a mask and a
    # heatmap (PNG, much smaller than the frame), so outputs get twice the room.
    max_frame_bytes: int = Field(8 * MIB, ge=1024, description="Largest frame message accepted, in bytes.")
    batch_size: int = Field(8, ge=1, description="Most frames a stage runs through its model at once.")
    poll_timeout_ms: int = Field(100, ge=1, description="How long a stage waits for frames before checking for work.")
    fetch_max_wait_ms: int = Field(
        20, ge=1, le=30_000,
        description=(
            "Longest the broker may hold a consumer's fetch while no record is there, in ms. Apache Kafka answers "
            "as soon as a record arrives, so 500 costs no latency there and idle stages poll 25x less; the "
            "embedded Tansu broker holds every empty fetch this long, so keep it low with it."
        ),
    )
    session_timeout_ms: int = Field(10_000, ge=1000, description="Consumer-group session timeout; a dead member is replaced after this.")
    retries: int = Field(2, ge=0, description="Attempts again for a frame whose processing raised, before it is dead-lettered.")
    review_band: float = Field(
        0.1, ge=0.0, lt=1.0,
        description="Normalised scores within this distance of 1.0 (the threshold) get a 'review' verdict.",
    )
    verdict_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="How long Redis keeps each verdict, in seconds.")
    recent_verdicts: int = Field(1000, ge=1, description="Verdicts kept in each line's recent list in Redis.")
    reload_interval_s: float = Field(2.0, gt=0, description="How often a stage checks its model packages for a new version.")
    health_port: int = Field(0, ge=0, description="Port of a stage's HTTP /healthz and /readyz; 0 = off.")
    group_suffix: str = Field("", description="Appended to consumer-group names (tests run isolated lines on one broker).")

    # The monitor (docs/monitor.md).
    monitor_db: str = Field(
        "monitor/monitor.db",
        description="Where the monitor keeps frames, labels, checks and alerts: an SQLite file, or a PostgreSQL URL "
        "(postgresql+psycopg://user:password@host:5432/db).",
    )
    reports_dir: Path = Field(Path("monitor/reports"), description="Where the monitor writes drift and accuracy reports.")
    drift_window: int = Field(50, ge=20, description="Most recent frames of an image type a drift check compares with the reference.")
    drift_every: int = Field(10, ge=1, description="Frames of an image type between two drift checks.")
    drift_min_interval_s: float = Field(
        1.0, ge=0.0, description="Least time between two drift checks of an image type (a check costs ~0.05 s of CPU, with its report ~2 s)."
    )
    drift_report_every_s: float = Field(
        600.0, gt=0.0, description="Evidently's drift report of an image type is written at least this often (and whenever drift is found)."
    )
    drift_cpu_share: float = Field(
        0.5, gt=0.0, le=1.0,
        description="Share of one core the scheduled drift checks may use: after a check that used c s of CPU the next waits c * (1/share - 1).",
    )
    reference_fallback: int = Field(
        200, ge=20, description="Without a reference in the model package, the first this many frames of a version are the reference."
    )
    iou_alert_below: float = Field(0.8, ge=0.0, le=1.0, description="Alert when an image type's mean mask IoU over labelled frames falls below this.")
    accuracy_alert_below: float = Field(0.9, ge=0.0, le=1.0, description="Alert when an image type's decision accuracy falls below this.")
    accuracy_window: int = Field(50, ge=1, description="Latest labelled frames of an image type the IoU and accuracy alerts look at.")
    min_labels: int = Field(10, ge=1, description="Labelled frames an image type needs before IoU and accuracy alerts fire.")
    review_window: int = Field(100, ge=10, description="Latest frames of an image type the review-rate alert looks at.")
    review_jump: float = Field(
        0.2, gt=0.0, le=1.0, description="Alert when the review rate of the latest window exceeds the rate before it by this much."
    )

    @property
    def redis_prefix(self) -> str:
        """Prefix of the line's Redis keys: the topic prefix with ':' ("lineinspect:")."""
        return self.topic_prefix.rstrip(".:") + ":"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def prepare_torch_process() -> None:
    """Process-wide settings for a process that runs the networks: torch's intra-op threads
    when LINEINSPECT_TORCH_THREADS is set (0 = torch's default), and freed memory kept for
    the next batch unless LINEINSPECT_HOLD_FREED_MEMORY=false."""
    settings = get_settings()
    if settings.hold_freed_memory:
        hold_freed_memory()
    if settings.torch_threads > 0:
        import torch

        torch.set_num_threads(settings.torch_threads)
