"""kwlab's analysis of sweep results: statistics over seeds, paper figures, ablation tables and `kwlab report`.

Modules, one concept each:

- `analysis.stats`: t intervals (and the percentile bootstrap), paired differences to a baseline over shared seeds
  with the paired t-test, Holm's correction, and when none of that is estimable; `summarize(trials, metric)` gives
  one row per variant.
- `analysis.power`: what the seeds can detect (minimal detectable difference, seeds needed) and `kwlab power`.
- `analysis.sweep`: a results store read for analysis (metric in percent, swept factors, legend labels, status).
- `analysis.attention`: attention.npz read into per-warehouse matrices with layer boundaries; seed averages.
- `analysis.style`: paper-column sizes, fonts, colours and saving (PNG and PDF).
- `analysis.figures`: the plot functions (tidy DataFrames in, a matplotlib Figure out; the caller saves).
- `analysis.tables`: the ablation table as Markdown and LaTeX (booktabs).
- `analysis.report`: writes every figure, table and report.md for one or more stores.
- `analysis.command`: the `kwlab report` command.
"""
