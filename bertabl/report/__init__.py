"""Results -> tables: best grid point per cell on dev, restarts aggregated, Markdown/LaTeX out."""
