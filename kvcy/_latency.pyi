"""Latency histograms kept in C; see kvcy/_latency.pyx."""
QUANTILES: tuple[float, ...]

class LatencyHistogram:
    """Log-linear buckets of latencies; one call in period is timed."""
    def __new__(cls, name: str, period: int = 1) -> LatencyHistogram:
        """ValueError unless period is a power of two."""
    @property
    def name(self) -> str: ...
    @property
    def period(self) -> int: ...
    @property
    def samples(self) -> int: ...
    def add(self, seconds: float) -> None:
        """Record one latency measured in Python (flushes, compactions)."""
    def quantile(self, q: float) -> float:
        """Upper bound in seconds of the bucket holding quantile q (0..1)."""
    def summary(self) -> dict[str, float | int]:
        """p50, p90, p99, p999, max and mean in microseconds, and samples."""
    def buckets(self) -> tuple[list[tuple[float, int]], float]:
        """[(upper bound in seconds, count)] of the non-empty buckets, and the sum."""
