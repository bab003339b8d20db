"""metrics.jsonl: one JSON object per logged step, appended and flushed as it happens; the same records go
to the trackers named in train.report_to (deco.train.report.tracking)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deco.train.report.tracking import finish_trackers, log_record, start_trackers

if TYPE_CHECKING:
    from deco.config import Config


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl (a torn last line from a kill is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; write them as strings so the file stays valid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsWriter:
    """Appends records to metrics.jsonl; on resume first drops records after the resumed step.

    With a `config` whose train.report_to names trackers, each record goes to them too (config stored first).
    """

    def __init__(self, path: str | Path, resume_step: int | None = None, config: Config | None = None) -> None:
        self.path = Path(path)
        self.trackers: list[Any] = []
        if config is not None and config.train.report_to:
            self.trackers = start_trackers(config.train.report_to, self.path.parent, config.train.tracker_project,
                                           config.to_dict(), resume_step)
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= resume_step]
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
            os.replace(tmp, self.path)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        """Append one record and flush it to the OS (survives a SIGKILL of this process)."""
        self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._file.flush()
        log_record(self.trackers, record)

    def close(self) -> None:
        """Close the file and finish the trackers."""
        self._file.close()
        finish_trackers(self.trackers)
        self.trackers = []
