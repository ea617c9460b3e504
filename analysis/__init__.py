"""kwlab's analysis of sweep results: statistics over seeds, paper figures, ablation tables and `kwlab report`.

Modules, one concept each:

- `analysis.stats`: t intervals (and the percentile bootstrap), paired differences to a baseline over shared seeds
  with the paired t-test, Holm's correction, and when none of that is estimable; `summarize(trials, metric)` gives
  one row per variant.
- `analysis.power`: what the seeds can detect (minimal detectable difference, seeds needed) and `kwlab power`.
- `analysis.equal_cost`: every variant against the static family interpolated to its parameters and MACs.
- `analysis.schedules`: training length as an axis: comparisons per schedule and the change of each gap.
- `analysis.catching_up`: the variants still gaining faster than their baseline when training stopped.
- `analysis.sweep`: a results store read for analysis (metric in percent, swept factors, legend labels, status,
  which config of a variant is current).
- `analysis.analyse`: a sweep with every statistic the report shows (`Analysis`), and the variants' colours.
- `analysis.families`: variant families (method and swept key) for colours and markers.
- `analysis.declared`: what the report reads from a method's own declaration (heatmap axes, compared setting).
- `analysis.attention`: attention.npz read into per-warehouse matrices with layer boundaries; seed averages.
- `analysis.importance`: which swept key mattered (Optuna's fANOVA on the store's trials).
- `analysis.style`: paper-column sizes, fonts, colours and saving (PNG and PDF).
- `analysis.figures`: the plot functions (tidy DataFrames in, a matplotlib Figure out; the caller saves).
- `analysis.tables`: the ablation, equal-cost and training-length tables as Markdown and LaTeX (booktabs).
- `analysis.section`: a report.md item (`Section`) and a kind of section with the files it writes (`Part`).
- `analysis.sections`: the report's parts, one module each, in report order (`PARTS`).
- `analysis.status`: report.md's Status section.
- `analysis.report`: writes every part, the header, Status and Method, for one or more stores.
- `analysis.combined`: the report over several stores.
- `analysis.command`: the `kwlab report` command.
"""
