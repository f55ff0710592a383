"""The tuner's core: configuration vocabulary, simulator, search space, studies and their
ranking, the frontier, presets, validation and measure mode. No click, rich or plotly."""
