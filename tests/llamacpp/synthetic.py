"""What llama-server's counters must show under `--spec-synth-rates`: the expectation for requests
that all run to max_tokens, and how far a measured window may stray from it.

The rates are UNCONDITIONAL per-position acceptance rates (common/arg.cpp, the flag's help;
tools/server/server-context.cpp, server_sample_and_accept_synth, accepts position i with
r_i / r_(i-1) and stops at the first rejection), so a full draft of K accepts r_1 + ... + r_K on
average. A request's last steps draft fewer positions: llama-server drafts at most the tokens left
but one (server-context.cpp, get_n_draft_max: min(n_draft_max, n_remaining - 1)), and such a draft
still counts as one draft, which pulls the window's AL and later positions below the rates."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

#: standard errors a measured figure may stray from its expectation: two-sided, about 6e-5 per check
Z = 4.0


@dataclass(frozen=True)
class SyntheticExpectation:
    drafts_per_request: float
    per_position: tuple[float, ...]  # accepted at each draft position / drafts
    acceptance_length: float  # 1 + accepted / drafts
    rates: tuple[float, ...]

    def al_tolerance(self, drafts: float) -> float:
        """Z standard errors of the mean accepted tokens per draft over `drafts` independent drafts
        (each request's draws are seeded from std::random_device, server-context.cpp; full drafts
        are the most variable): Var = sum (2i - 1) r_i - (sum r_i)^2."""
        variance = sum((2 * i + 1) * r for i, r in enumerate(self.rates)) - sum(self.rates) ** 2
        return Z * math.sqrt(variance / drafts)

    def position_tolerance(self, position: int, drafts: float) -> float:
        """Z standard errors of one position's accepted share over `drafts` drafts."""
        p = self.per_position[position]
        return Z * math.sqrt(p * (1 - p) / drafts)


def expected(rates: tuple[float, ...], max_tokens: int) -> SyntheticExpectation:
    """The expectation for requests of max_tokens with ignore_eos drafting len(rates) positions.
    The first token comes from the prompt's step."""
    k = len(rates)

    @cache
    def ahead(generated: int) -> tuple[float, tuple[float, ...]]:  # expected drafts, accepted per position
        if generated >= max_tokens:
            return 0.0, (0.0,) * k
        d = min(k, max_tokens - generated - 1)
        if d <= 0:
            return ahead(generated + 1)
        reach = [1.0, *rates[:d], 0.0]  # P(at least j accepted)
        drafts, accepted = 1.0, [0.0] * k
        for j in range(d + 1):
            p = reach[j] - reach[j + 1]
            later_drafts, later_accepted = ahead(generated + j + 1)
            drafts += p * later_drafts
            for i in range(k):
                accepted[i] += p * (later_accepted[i] + (i < j))
        return drafts, tuple(accepted)

    drafts, accepted = ahead(1)
    return SyntheticExpectation(drafts, tuple(a / drafts for a in accepted), 1 + sum(accepted) / drafts,
                                tuple(rates))


def assert_server_al(server: dict, truth: SyntheticExpectation) -> None:
    """The report's server AL against the expectation, within Z standard errors of its window's drafts."""
    drafts = server["drafts"]
    tolerance = truth.al_tolerance(drafts)
    assert abs(server["acceptance_length"] - truth.acceptance_length) <= tolerance, (
        f"server AL {server['acceptance_length']:.3f} over {drafts:.0f} drafts; expected "
        f"{truth.acceptance_length:.3f} +- {tolerance:.3f}")
