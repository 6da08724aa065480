"""The C loops of DBIterator (LevelDB's DBIter); see kvcy/_db_iter_core.pyx."""
from kvcy._latency import LatencyHistogram

class DBIterCore:
    """State and C loops only; use DBIterator (kvcy._db_iter)."""
    latency: LatencyHistogram | None
    @property
    def expiring_met(self) -> int:
        """Expiring values (put with ttl=) it has judged, live or expired."""
    closed_message: str
