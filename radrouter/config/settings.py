"""The one typed settings schema: every default lives here and nowhere else.

Sources, strongest first: keyword arguments, ``RADROUTER_*`` environment variables (nested keys joined
by ``__``, e.g. ``RADROUTER_NODE__PORT``), the YAML file named by ``RADROUTER_CONFIG`` or ``--config``,
and these defaults. A YAML section that is left out keeps its defaults.
"""

from __future__ import annotations

import enum
import os
import socket
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, IPvAnyNetwork, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from radrouter.config.access import OIDCSettings, SessionSettings, SignInSettings, WebTLSSettings
from radrouter.config.commitment import CommitmentSettings
from radrouter.config.deidentification import Deidentification
from radrouter.config.monitoring import MonitoringSettings
from radrouter.config.pipelines import NetworkPipelineSetting, WorkerPool
from radrouter.config.results import KeyImageSettings, ResultPart, default_result_parts
from radrouter.config.rules import Priority, Rule, default_rules
from radrouter.config.worklist import WorklistSettings

CONFIG_ENV = "RADROUTER_CONFIG"
#: The file ``load_settings`` was given, for the one ``Settings`` it is building (no global state).
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("config_file", default=None)


def config_file_from_environment() -> Path | None:
    """The config file every process of the node reads (the CLI's ``--config`` names it for them)."""
    path = os.environ.get(CONFIG_ENV)
    return Path(path) if path else None


class DicomTLSSettings(BaseModel):
    """DICOM TLS (PS3.15 B.1) on the SCP port: off unless a certificate and key are given."""

    cert_file: Path | None = Field(
        None, description="PEM certificate of the SCP; with key_file, the SCP port speaks TLS only."
    )
    key_file: Path | None = Field(None, description="PEM private key of the SCP certificate.")
    ca_file: Path | None = Field(None, description="PEM CA bundle that client certificates must chain to.")
    require_client_cert: bool = Field(
        False, description="Mutual TLS: refuse clients without a certificate from ca_file."
    )

    @model_validator(mode="after")
    def _complete(self) -> DicomTLSSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("TLS needs both cert_file and key_file")
        if self.require_client_cert and (self.ca_file is None or self.cert_file is None):
            raise ValueError("require_client_cert needs cert_file, key_file and ca_file")
        return self


class CallingAE(BaseModel):
    """An allow-list entry that binds a calling AE title to the addresses it may call from."""

    ae_title: str = Field(min_length=1, max_length=16, description="The calling AE title, as sent.")
    hosts: list[IPvAnyNetwork] = Field(
        min_length=1,
        description="Addresses or networks (10.0.0.7, 10.1.0.0/16) the title may associate from.",
    )


class NodeSettings(BaseModel):
    """The DICOM SCP that modalities and PACS send to."""

    ae_title: str = Field("RADROUTER", min_length=1, max_length=16, description="Our AE title.")
    host: str = Field("0.0.0.0", description="Address the SCP listens on.")
    port: int = Field(11112, ge=1, le=65535, description="DICOM port of the SCP.")
    max_pdu: int = Field(0, ge=0, description="Maximum PDU size we receive; 0 means unlimited.")
    max_associations: int = Field(
        32, ge=1, description="Concurrent associations (all SCP processes together) before rejecting."
    )
    allowed_calling_aes: list[str | CallingAE] = Field(
        default_factory=list,
        description="Calling AE titles allowed to associate, each a title (from any address) or "
        "`{ae_title: CT01, hosts: [10.0.0.7]}` (only from those addresses); empty accepts all.",
    )
    check_called_ae: bool = Field(True, description="Reject associations not addressed to our AE title.")
    memory_budget_mb: int = Field(
        2048,
        ge=1,
        description="Instance bytes all SCP processes together may hold in memory at once (deflated or "
        "re-identified instances are decoded whole; others stream to disk); past it, 0xA700: try later.",
    )
    processes: int = Field(
        2, ge=1, le=64, description="SCP processes sharing the port (one per core is a good start)."
    )
    tls: DicomTLSSettings = DicomTLSSettings()
    metrics_port: int = Field(
        9112, ge=0, le=65535, description="Prometheus port of the SCP process (associations, bytes); 0: off."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address the SCP's Prometheus port listens on (0.0.0.0: every interface)."
    )
    health_echo_host: str = Field(
        "",
        description="Host `/api/health` sends its C-ECHO to; empty: `host` (loopback when that is 0.0.0.0).",
    )


class WebSettings(BaseModel):
    """The web app: JSON API, pages and Prometheus metrics."""

    host: str = Field("127.0.0.1", description="Address of the web app.")
    port: int = Field(8080, ge=1, le=65535, description="Port of the web app.")
    api_token: SecretStr | None = Field(
        None,
        description="A service token with the admin role (`Authorization: Bearer <token>`), e.g. for "
        "remote workers; `radrouter tokens add` makes revocable ones.",
    )
    max_request_mb: int = Field(
        4096,
        ge=1,
        description="Largest STOW-RS request body; a larger one is refused (413) with nothing stored.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Names the web app answers to (Host, and Origin of state changes); empty: 127.0.0.1, "
        "localhost, ::1 and web.host.",
    )
    public_health: bool = Field(True, description="Serve /api/health without sign-in (health checks).")
    public_metrics: bool = Field(True, description="Serve /metrics without sign-in (Prometheus scrapes).")
    tls: WebTLSSettings = WebTLSSettings()
    session: SessionSettings = SessionSettings()
    sign_in: SignInSettings = SignInSettings()
    oidc: OIDCSettings = OIDCSettings()

    def answers_to(self) -> list[str]:
        """The host names Host and Origin are checked against."""
        if self.allowed_hosts:
            return self.allowed_hosts
        return sorted({"127.0.0.1", "localhost", "::1", "[::1]", self.host} - {"0.0.0.0", "::"})


class ResendPolicy(enum.StrEnum):
    """What the SCP does with a SOP Instance UID it holds, sent again with another patient or study."""

    #: The first copy stays; the new one is stored apart (``<root>/resent/``) and recorded.
    KEEP_FIRST = "keep_first"
    #: The new copy takes the first one's place (moving to its study); the first file is removed.
    REPLACE = "replace"
    #: The new copy is refused (0x0111 Duplicate SOP Instance); nothing is stored.
    REJECT = "reject"


class ViewerSettings(BaseModel):
    """The image viewer the reading list opens a study in (OHIF, a PACS web viewer)."""

    url_template: str = Field(
        "",
        description="URL of a study in the viewer, with `{study_uid}` for its Study Instance UID, e.g. "
        "`https://ohif.example/viewer?StudyInstanceUIDs={study_uid}`; empty: rows link nowhere.",
    )

    @model_validator(mode="after")
    def _names_the_study(self) -> ViewerSettings:
        if self.url_template:
            try:
                formatted = self.url_template.format(study_uid="1.2.3")
            except (KeyError, IndexError, ValueError) as error:
                raise ValueError(f"viewer.url_template may name only {{study_uid}}: {error}") from error
            if "1.2.3" not in formatted:
                raise ValueError("viewer.url_template must contain {study_uid}")
        return self


class StorageSettings(BaseModel):
    """Where received instances, results and the index live."""

    root: Path = Field(Path("radrouter-data"), description="Folder for instances, results and the index.")
    index_url: str = Field(
        "", description="SQLAlchemy URL of the index; empty means SQLite at <root>/index.sqlite3."
    )
    fsync: bool = Field(True, description="fsync every instance before answering Success (durability).")
    free_space_reserve_mb: int = Field(
        1024,
        ge=0,
        description="Answer Out of Resources (0xA700) rather than fill the disk past this reserve.",
    )

    max_instance_mb: int = Field(
        8192,
        ge=1,
        description="Largest instance the SCP stores; a larger one is answered Out of Resources (0xA700).",
    )
    conflicting_resend: ResendPolicy = Field(
        ResendPolicy.KEEP_FIRST,
        description="A SOP Instance UID sent again with another patient or study: keep_first (the new "
        "copy kept apart), replace, or reject; recorded in both studies' audit trails.",
    )

    def resolved_index_url(self) -> str:
        return self.index_url or f"sqlite:///{self.root.resolve() / 'index.sqlite3'}"


class BrokerSettings(BaseModel):
    """The Celery broker (Redis)."""

    url: str = Field("", description="Redis URL; empty means an embedded redis-server that `up` runs.")
    embedded_port: int = Field(6390, ge=1, le=65535, description="Port of the embedded redis-server.")
    visibility_timeout_s: int = Field(
        3600,
        ge=1,
        description="A task taken by a worker that died is given to another after this many seconds; "
        "longer than the longest job.",
    )

    def resolved_url(self) -> str:
        return self.url or f"redis://127.0.0.1:{self.embedded_port}/0"


class DiscontinuedStudy(enum.StrEnum):
    """What a study whose every performed procedure step was DISCONTINUED gets at completion."""

    ROUTE = "route"
    HOLD = "hold"


class CompletionSettings(BaseModel):
    """When a study counts as complete: by its MPPS when the modality sends one, else by a timer."""

    quiet_period_s: float = Field(
        1.0, gt=0, le=3600, description="Seconds without new instances, after release, before completion."
    )
    open_quiet_period_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Seconds without new instances before completion while an association stays open.",
    )
    mpps_grace_s: float = Field(
        30.0,
        ge=0,
        le=86400,
        description="Seconds after an MPPS COMPLETED that a study waits for listed instances not yet "
        "stored; it then completes with what arrived, the missing ones recorded.",
    )
    mpps_in_progress_quiet_s: float = Field(
        3600.0,
        gt=0,
        le=86400,
        description="A study whose MPPS stays IN PROGRESS completes after this many seconds without "
        "instances (a modality that never ends its step).",
    )
    mpps_discontinued: DiscontinuedStudy = Field(
        DiscontinuedStudy.ROUTE,
        description="A study whose MPPS was DISCONTINUED: `route` what arrived, or `hold` it (DONE, "
        "not routed, with the reason).",
    )


class ClusterSettings(BaseModel):
    """Several SCP nodes behind one address, sharing completion through the PostgreSQL index."""

    enabled: bool = Field(
        False,
        description="Decide study completion in the shared index, so that several SCP nodes (behind "
        "HAProxy or DNS round-robin) complete a study once; needs a PostgreSQL index_url. Off: the "
        "node's own in-memory assembler, the fastest for one machine.",
    )
    node_name: str = Field(
        "", max_length=64, description="This node's name in the index and logs; empty means the host name."
    )
    node_timeout_s: float = Field(
        10.0,
        ge=1,
        description="A node whose heartbeat (every fifth of this) stopped this long ago is gone: its "
        "associations count as ended and its studies complete from what it stored.",
    )
    flush_interval_s: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Seconds between writes of arrivals to the index (batched, so no C-STORE waits on "
        "them); less than completion.quiet_period_s.",
    )

    def resolved_node_name(self) -> str:
        return self.node_name or socket.gethostname()


class DeliverySettings(BaseModel):
    """C-STORE of results (and forwarded originals) to destinations."""

    max_attempts: int = Field(10, ge=1, description="Attempts before a delivery is marked FAILED.")
    backoff_initial_s: float = Field(2.0, gt=0, description="Wait before the first retry.")
    backoff_max_s: float = Field(300.0, gt=0, description="Longest wait between retries.")
    timeout_s: float = Field(30.0, gt=0, description="Network timeout of one association.")
    keep_open_s: float = Field(
        10.0,
        ge=0,
        description="Seconds an association to a destination stays open after a delivery, for the next "
        "one to reuse (below the peer's own idle timeout: Orthanc's is 30 s); 0 closes it at once.",
    )
    dead_letter_after_s: float = Field(
        86400.0,
        gt=0,
        description="A delivery still failing this long after it was created goes to the dead-letter "
        "state (FAILED); `radrouter deliveries retry` sends it again.",
    )


class InferenceSettings(BaseModel):
    """How workers run models."""

    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu or cuda[:N].")
    torch_threads: int = Field(0, ge=0, description="CPU threads for torch; 0 means all cores.")
    roi_size: tuple[int, int, int] = Field(
        (96, 96, 96), description="Sliding-window ROI (voxels on the model grid) for network pipelines."
    )
    overlap: float = Field(0.25, ge=0, lt=1, description="Overlap of neighbouring sliding windows.")
    sw_batch_size: int = Field(1, ge=1, description="Windows per forward pass.")
    amp: bool = Field(True, description="Mixed precision (float16 autocast) on CUDA.")
    max_loaded_pipelines: int = Field(
        4, ge=1, description="Models a worker keeps warm; the least recently used is evicted beyond this."
    )
    min_free_memory_mb: int = Field(
        1024,
        ge=0,
        description="Evict least recently used models while free (GPU or RAM) memory is below this.",
    )
    worker_lost_after_s: float = Field(
        30.0,
        ge=5,
        description="A worker whose heartbeat (every third of this) stopped this long ago is lost: the "
        "SCP's reconciler queues its RUNNING jobs again (one that restarts takes them back at once).",
    )
    max_worker_losses: int = Field(
        3,
        ge=1,
        description="A job whose worker was lost (killed, out of memory) this many times is FAILED with "
        "that reason instead of taken over again, so one series cannot crash-loop a worker for good.",
    )
    jobs_per_worker: int = Field(
        2,
        ge=1,
        le=8,
        description="Jobs an inference worker holds at once: while one runs its model, the next loads its "
        "series and the last writes its results. Models still run one at a time per worker (device).",
    )


class RoutingSettings(BaseModel):
    """How rules read headers, and when they are re-read."""

    orientation_tolerance_deg: float = Field(
        20.0, ge=0, le=45, description="Largest tilt from a plane still called axial, sagittal or coronal."
    )
    reload: bool = Field(
        True, description="Re-read rules and destinations when the config file changes (no restart)."
    )


class SeriesAccess(enum.StrEnum):
    SHARED = "shared"
    DICOMWEB = "dicomweb"


class WorkerSettings(BaseModel):
    """How a worker reaches the series it computes on and returns its results."""

    series_access: SeriesAccess = Field(
        SeriesAccess.SHARED,
        description="shared: the node's storage root is mounted at the same path; dicomweb: fetch series "
        "from the node by WADO-RS into this worker's storage root and return results by STOW-RS.",
    )
    node_url: str = Field(
        "", description="The node's DICOMweb base URL for dicomweb, e.g. http://node:8080/dicomweb."
    )
    job_credential_ttl_s: int = Field(
        86400,
        ge=60,
        description="How long the credential a job's task carries lets a worker STOW-RS that job's "
        "results to the node (from dispatch; longer than a job waits in its queue and runs).",
    )

    @model_validator(mode="after")
    def _dicomweb_needs_the_node(self) -> WorkerSettings:
        if self.series_access == SeriesAccess.DICOMWEB and not self.node_url:
            raise ValueError("series_access dicomweb needs node_url (the node's /dicomweb base URL)")
        return self


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


class LoggingSettings(BaseModel):
    """What every radrouter process writes to stderr."""

    level: str = Field(
        "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$", description="Least severe level logged."
    )
    format: LogFormat = Field(
        LogFormat.TEXT, description="text for a terminal; json: one object a line, with study_uid."
    )


class SupervisorSettings(BaseModel):
    """How ``radrouter up`` keeps its processes running: one that ends is started again, the rest go on."""

    restart_backoff_initial_s: float = Field(
        1.0, gt=0, description="Wait before starting a process that ended; doubled each time it ends again."
    )
    restart_backoff_max_s: float = Field(60.0, gt=0, description="Longest wait before a restart.")
    stable_after_s: float = Field(
        60.0, gt=0, description="A process that ran this long before it ended starts from the first wait."
    )
    crash_loop_after: int = Field(
        3,
        ge=1,
        description="Ends in a row, each before stable_after_s, that report the process crash-looping.",
    )


class RecoverySettings(BaseModel):
    """The reconciler that finds work a crash or a broker outage left behind."""

    interval_s: float = Field(30.0, gt=0, description="Seconds between reconciler passes in the SCP.")
    receiving_timeout_s: float = Field(
        300.0,
        gt=0,
        description="A study still RECEIVING this long after its last instance, with no association "
        "open, is completed by the reconciler (its sender or our SCP died mid-study).",
    )
    scp_lost_after_s: float = Field(
        30.0,
        ge=5,
        description="An SCP whose heartbeat (every third of this) stopped this long ago is gone: the "
        "studies it was receiving are completed by another SCP's reconciler, not after receiving_timeout_s.",
    )
    undispatched_after_s: float = Field(
        10.0,
        gt=0,
        description="A job recorded but not handed to the broker this long ago is queued again.",
    )
    aftercare_after_s: float = Field(
        120.0,
        gt=0,
        description="A finished job whose triage or monitoring has not been recorded this long after it "
        "was sent (the delivery worker that had the task died) gets the task again; both are idempotent.",
    )


class RetentionSettings(BaseModel):
    """How long received images and results stay: a transit node, not an archive (PACS is)."""

    enabled: bool = Field(True, description="Purge what retention allows, every interval_s, in the SCP.")
    keep_images_h: float = Field(
        72.0,
        ge=0,
        description="Hours a finished study's received instances stay (every job DONE or FAILED, every "
        "delivery delivered or dead-lettered), for late instances and re-runs; then they are purged.",
    )
    keep_results_h: float = Field(
        168.0, ge=0, description="Hours a finished study's results (SEG, SR) stay before they are purged."
    )
    keep_records_days: float = Field(
        365.0,
        gt=0,
        description="Days the index keeps the rows of a study whose instances and results were all purged "
        "(jobs, deliveries, audit events, worklist items, feedback, monitoring points: UIDs and figures, no "
        "patient data); then they are deleted and a late instance is a new study.",
    )
    high_watermark_pct: float = Field(
        85.0,
        gt=0,
        le=100,
        description="Above this use of the storage volume, the oldest finished studies are purged "
        "before their keep time, until low_watermark_pct; unfinished studies are never touched.",
    )
    low_watermark_pct: float = Field(
        75.0, gt=0, le=100, description="Where a purge started by high_watermark_pct stops."
    )
    interval_s: float = Field(60.0, gt=0, description="Seconds between retention passes in the SCP.")

    @model_validator(mode="after")
    def _low_below_high(self) -> RetentionSettings:
        if self.low_watermark_pct > self.high_watermark_pct:
            raise ValueError("low_watermark_pct must not be above high_watermark_pct")
        return self


class Destination(BaseModel):
    """A DICOM peer that receives results or forwarded images."""

    host: str = Field(description="Host name or address of the peer.")
    port: int = Field(ge=1, le=65535, description="DICOM port of the peer.")
    ae_title: str = Field(min_length=1, max_length=16, description="AE title of the peer (called AE).")
    external: bool = Field(
        False,
        description="Outside the hospital: all sent there is de-identified as `deidentify` says.",
    )
    deidentify: Deidentification | None = Field(
        None, description="De-identification on the way to this destination; required when it is external."
    )
    results: list[ResultPart] = Field(
        default_factory=default_result_parts,
        min_length=1,
        description="What it receives of a job's results: `seg`, `sr`, `key_images` (outlined slices "
        "with a legend, for a viewer that shows no DICOM-SEG).",
    )
    storage_commitment: bool = Field(
        False,
        description="Ask the destination for Storage Commitment of what was sent: a delivery is DELIVERED "
        "only once its commitment report says every instance is committed.",
    )
    forward_mpps: bool = Field(
        False, description="Forward the modalities' MPPS N-CREATE and N-SET to this destination (PACS, RIS)."
    )

    @model_validator(mode="after")
    def _external_needs_deidentification(self) -> Destination:
        if self.external and self.deidentify is None:
            raise ValueError("an external destination needs a `deidentify` block (with its `key`)")
        return self

    @model_validator(mode="after")
    def _sr_with_its_seg(self) -> Destination:
        """The SR references the SEG it measures: without the SEG, a viewer following it finds nothing."""
        if ResultPart.SR in self.results and ResultPart.SEG not in self.results:
            raise ValueError("results: `sr` needs `seg` too (the SR references the SEG's segments)")
        return self


def _default_destinations() -> dict[str, Destination]:
    return {"pacs": Destination(host="127.0.0.1", port=4242, ae_title="ORTHANC")}


class Settings(BaseSettings):
    """Everything radrouter can be told; the defaults run a whole node on one machine."""

    model_config = SettingsConfigDict(
        env_prefix="RADROUTER_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    node: NodeSettings = NodeSettings()
    web: WebSettings = WebSettings()
    viewer: ViewerSettings = ViewerSettings()
    storage: StorageSettings = StorageSettings()
    broker: BrokerSettings = BrokerSettings()
    completion: CompletionSettings = CompletionSettings()
    cluster: ClusterSettings = ClusterSettings()
    commitment: CommitmentSettings = CommitmentSettings()
    delivery: DeliverySettings = DeliverySettings()
    inference: InferenceSettings = InferenceSettings()
    key_images: KeyImageSettings = KeyImageSettings()
    worklist: WorklistSettings = WorklistSettings()
    routing: RoutingSettings = RoutingSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    worker: WorkerSettings = WorkerSettings()
    logging: LoggingSettings = LoggingSettings()
    recovery: RecoverySettings = RecoverySettings()
    retention: RetentionSettings = RetentionSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    destinations: dict[str, Destination] = Field(default_factory=_default_destinations)
    rules: list[Rule] = Field(default_factory=default_rules)
    pipelines: dict[str, NetworkPipelineSetting] = Field(
        default_factory=dict, description="Pipelines declared in config alone (TorchScript or MONAI bundle)."
    )
    pools: dict[str, WorkerPool] = Field(
        default_factory=dict, description="Worker pools: pipelines sharing a queue, one worker per GPU."
    )
    default_priority: Priority = Field(
        Priority.ROUTINE, description="Celery priority of tasks no rule ranks."
    )

    @model_validator(mode="after")
    def _rules_name_known_destinations(self) -> Settings:
        names = [rule.name for rule in self.rules]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"rule names must be unique; used more than once: {twice}")
        for rule in self.rules:
            for action in ("results_to", "forward_to"):
                unknown = sorted(set(getattr(rule, action)) - set(self.destinations))
                if unknown:
                    raise ValueError(f"rule {rule.name!r}: {action} names unknown destinations {unknown}")
        pooled = [name for pool in self.pools.values() for name in pool.pipelines]
        twice = sorted({name for name in pooled if pooled.count(name) > 1})
        if twice:
            raise ValueError(f"pipelines in more than one pool: {twice}")
        if self.cluster.enabled and not self.storage.resolved_index_url().startswith("postgresql"):
            raise ValueError("cluster.enabled needs a PostgreSQL storage.index_url, shared by every node")
        if self.cluster.enabled and self.cluster.flush_interval_s >= self.completion.quiet_period_s:
            raise ValueError(
                "cluster.flush_interval_s must be shorter than completion.quiet_period_s: an association's "
                "arrivals would reach the index after its study could complete"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_FILE.get() or config_file_from_environment()
        if path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read settings, from ``config_file`` when given (it then wins over ``RADROUTER_CONFIG``).

    Only reads: the process environment is left as it was (the CLI names the file for child processes).
    """
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")
    environment_file = config_file_from_environment()
    if config_file is None and environment_file is not None and not environment_file.is_file():
        raise FileNotFoundError(f"config file not found: {environment_file} (from {CONFIG_ENV})")
    token = _CONFIG_FILE.set(config_file.resolve() if config_file is not None else None)
    try:
        return Settings(**overrides)
    finally:
        _CONFIG_FILE.reset(token)
