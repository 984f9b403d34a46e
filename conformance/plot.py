"""``--plot FILE.png``: for each failing golden case, its error per output in forward order against
the tolerance, so the layer where a port starts to diverge stands out. matplotlib is optional."""

from __future__ import annotations

from .checks import forward_order

MAX_PANELS = 12


def plot_failures(results, path) -> str:
    """Draw the failing cases' margins (|err| / (atol + rtol |want|), 1 = the tolerance) per
    output."""
    failing = [r for r in results if r.status in ("fail", "xfail") and r.comparisons]
    if not failing:
        return f"--plot: no failing case with compared outputs, so {path} was not written"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = failing[:MAX_PANELS]
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 2.6 * len(shown)), squeeze=False)
    for ax, result in zip(axes[:, 0], shown):
        comparisons = sorted(result.comparisons, key=lambda c: forward_order(c.name))
        names = [c.name for c in comparisons]
        margins = [
            min(max(c.margin, 1e-6), 1e6) for c in comparisons
        ]  # missing/NaN outputs draw at the top
        colours = ["tab:red" if not c.ok else "tab:blue" for c in comparisons]
        ax.bar(range(len(names)), margins, color=colours)
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="tolerance")
        first = next((i for i, c in enumerate(comparisons) if not c.ok), None)
        if first is not None:
            ax.annotate(
                "first divergence",
                (first, margins[first]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("|err| / allowed")
        ax.set_title(f"{result.id} (atol {result.atol:g}, rtol {result.rtol:g})", fontsize=9)
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    more = f" ({len(failing) - len(shown)} more not drawn)" if len(failing) > len(shown) else ""
    return f"--plot: {len(shown)} failing cases drawn to {path}{more}"
