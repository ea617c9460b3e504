"""KernelWarehouse (Li & Yao, ICML 2024): config, planner, attention, warehouse, layers, converter and layouts; its
per-sample paths are the mixing engine's (kwlab.methods.mixing)."""
