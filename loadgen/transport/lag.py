"""How far behind the network the client read: kernel arrival stamp -> the read that processed it.

Kept as counts in 10 µs bins (0 to 1 s, then one overflow bin) so a run of any length costs
the same few kilobytes and one increment per read.
"""

from __future__ import annotations

__all__ = ["ReadLag"]

BIN_NS = 10_000
BINS = 100_000  # 1 s


class ReadLag:
    __slots__ = ("counts", "max_ns", "total")

    def __init__(self) -> None:
        self.counts = [0] * (BINS + 1)
        self.max_ns = 0
        self.total = 0

    def add(self, lag_ns: int) -> None:
        i = lag_ns // BIN_NS
        self.counts[i if 0 <= i < BINS else (BINS if i >= BINS else 0)] += 1
        self.total += 1
        if lag_ns > self.max_ns:
            self.max_ns = lag_ns

    def merge(self, other: ReadLag) -> None:
        """Add another process's reads (worker processes each keep their own)."""
        for i, n in enumerate(other.counts):
            if n:
                self.counts[i] += n
        self.total += other.total
        self.max_ns = max(self.max_ns, other.max_ns)

    def to_json(self) -> dict:
        return {"bins": {str(i): n for i, n in enumerate(self.counts) if n}, "max_ns": self.max_ns}

    @classmethod
    def from_json(cls, obj: dict) -> ReadLag:
        lag = cls()
        for i, n in obj["bins"].items():
            lag.counts[int(i)] = n
        lag.total, lag.max_ns = sum(lag.counts), obj["max_ns"]
        return lag

    def quantile(self, q: float) -> float | None:
        """Upper edge (seconds) of the bin holding the q-quantile, capped at the maximum: an upper
        bound within 10 µs (the overflow bin answers with the maximum)."""
        if not self.total:
            return None
        rank = q * self.total
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank and n:
                return (self.max_ns if i == BINS else min((i + 1) * BIN_NS, self.max_ns)) / 1e9
        return self.max_ns / 1e9

    def summary(self) -> dict:
        return {"reads": self.total, "p50_s": self.quantile(0.5), "p99_s": self.quantile(0.99),
                "max_s": self.max_ns / 1e9 if self.total else None}
