"""The figures of a comparison (`bvae compare`), per configuration, seeds aggregated."""

from pipeline.reports.compare import LIKELIHOOD, fid_keys, fid_title
from pipeline.reports.seed_stats import Group


def figures(groups: list[Group], out_dir) -> list:
    """compare.png: FIDs, bits/dim, beta_eff and KL gradient share per configuration, with
    ±1 std error bars; curves.png: stage 1's training curves, mean with a ±1 std band."""
    import numpy as np

    from pipeline.reports.plots import plt, save_figure

    labels = [g.label for g in groups]
    x = np.arange(len(groups))

    def bars(ax, key, width=0.8, offset=0.0, **kw):
        stats = [g.stat(key) for g in groups]
        ax.bar(
            x + offset,
            [s.mean if s else np.nan for s in stats],
            width,
            yerr=[s.std if s and s.std is not None else 0 for s in stats],
            capsize=3,
            **kw,
        )

    fig, axes = plt.subplots(2, 2, figsize=(14, 9), constrained_layout=True)
    for i, k in enumerate([k for k in fid_keys(groups) if k.endswith(("_rec", "_gen1", "_gen2"))][:3]):
        bars(axes[0, 0], k, 0.27, (i - 1) * 0.27, label=fid_title(k))
    axes[0, 0].set(title="FID (lower is better)")
    axes[0, 0].legend(fontsize=7)
    bpd = ("bpd_iwae_stage1_gamma_test", "bpd_iwae_twostage_gamma_test")
    for i, k in enumerate(bpd):
        bars(axes[0, 1], k, 0.4, (i - 0.5) * 0.4, label=LIKELIHOOD[k])
    lows = [g.stat(k).mean - (g.stat(k).std or 0) for g in groups for k in bpd if g.stat(k)]
    if lows:  # the differences are tenths of a bit on top of several bits: start the axis near them
        axes[0, 1].set_ylim(bottom=0.95 * min(lows))
    axes[0, 1].set(title="bits/dim, IWAE bound at gamma_test (lower is better; axis not from 0)")
    axes[0, 1].legend(fontsize=7)
    bars(axes[1, 0], "train_vae.final_beta_eff", color="tab:purple")
    axes[1, 0].set(title="final beta_eff (KL weight next to the per-value MSE)", yscale="log")
    bars(axes[1, 1], "train_vae.final_kl_grad_share", color="tab:green")
    axes[1, 1].set(title="KL's share of the encoder gradient (stage 1, last epoch)")
    for ax in axes.flat:
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    paths = [out_dir / "compare.png", out_dir / "curves.png"]
    save_figure(fig, paths[0])

    titles = dict(mse="per-value MSE (training)", kl_common="beta_eff * KL (the KL term next to the MSE)")
    titles |= dict(gamma="gamma (decoder std)", beta_eff="beta_eff")
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), constrained_layout=True)
    for ax, (metric, title) in zip(axes.flat, titles.items()):
        for g in groups:
            pts = g.curves.get(metric, [])
            if pts:
                steps = [s for s, _ in pts]
                mean = np.array([st.mean for _, st in pts])
                std = np.array([st.std or 0.0 for _, st in pts])
                (line,) = ax.plot(steps, mean, label=g.label)
                ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
        ax.set(title=title, xlabel="epoch", yscale="log")
    axes[0, 0].legend(fontsize=7)
    save_figure(fig, paths[1])
    return paths
